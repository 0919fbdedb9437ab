#!/usr/bin/python3
"""test_image.py - builds docker/Dockerfile with podman and runs the image for real.

No Docker engine or registry is reachable on CI, and `podman run` cannot set
rlimits in its sandbox, so (docs/docker.md, "How the image is tested"):

1. Base image: `debootstrap --variant=minbase bookworm` from the Debian mirror
   apt already uses (read from /etc/apt), trimmed like Docker's slim image,
   cached in $WSGATE_DOCKER_CACHE (default /var/cache/wsgate-test/bookworm)
   and reused; imported as debian:bookworm-slim and
   docker.io/library/debian:bookworm-slim unless podman already has it.
2. `podman build --pull=never --isolation=chroot --network=host --format docker
   -f docker/Dockerfile .` from the repository root, tagged for this run.
3. `podman inspect`: User, Entrypoint, Cmd, Env, Healthcheck, ExposedPorts;
   the image size, which must stay under WSGATE_IMAGE_MAX_MB (150).
4. `podman create` + `podman export | tar -x`: the image's filesystem in a
   temp dir. Its default config and docker/wsgate.compose.json pass
   `wsgate --check` with the image's binary; docker/compose.yaml is checked
   for the services, files and ports it refers to.
5. A test config (127.0.0.1, free ports) replaces /etc/wsgate/wsgate.json, as
   a mounted config would; a wsgate-echo from the image runs inside the
   chroot and a mosquitto on the host. The config names them "echo" and
   "mosquitto" as the compose config does (the tree's /etc/hosts maps both
   to 127.0.0.1, as compose's DNS would map them to the services). The entrypoint + cmd run with
   `chroot --userspec=UID:GID` of the image's user (never root) and the
   image's environment. Checked: the HEALTHCHECK command from inspect fails
   before the gateway is up and passes once it is; /healthz; the demo page;
   an echo round trip over WebSocket (text and binary); an MQTT envelope
   subscribe / publish round trip both ways; SIGTERM exits 0.
6. Every process is stopped by PID; the container and the test tag are
   removed; the cached base stays.

Missing podman, debootstrap, mosquitto or root: skipped (exit 77), or a
failure when CI=true. Environment: WSGATE_SOURCE_DIR (set by ctest),
WSGATE_DOCKER_CACHE, WSGATE_IMAGE_MAX_MB, WSGATE_DOCKER_KEEP=1 (keep the
image and the exported tree for a look afterwards).
"""

import fcntl
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("WSGATE_SOURCE_DIR", os.path.normpath(os.path.join(HERE, "..", "..")))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))

SKIP = 77
CI = os.environ.get("CI", "").lower() == "true"
CACHE_ROOT = os.environ.get("WSGATE_DOCKER_CACHE", "/var/cache/wsgate-test")
BASE_DIR = os.path.join(CACHE_ROOT, "bookworm")
# what `FROM debian:bookworm-slim` may resolve to (podman import of a short name
# makes localhost/...; Docker Hub's official name is docker.io/library/...)
BASE_TAGS = ["localhost/debian:bookworm-slim", "docker.io/library/debian:bookworm-slim"]
BASE_MARK = ".wsgate-test-base"
BASE_VERSION = "2"  # bump when the trimming below changes
MAX_MB = float(os.environ.get("WSGATE_IMAGE_MAX_MB", "150"))
KEEP = os.environ.get("WSGATE_DOCKER_KEEP") == "1"
T0 = time.monotonic()


def log(msg):
    print("[%6.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


def skip_or_fail(reason):
    if CI:
        print("FAIL: %s (CI=true: the image test must run)" % reason, flush=True)
        sys.exit(1)
    print("SKIP: %s" % reason, flush=True)
    sys.exit(SKIP)


def run(args, timeout=600, check=True, **kw):
    """Runs a command to completion; its output is printed on failure."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.run(args, timeout=timeout, **kw)
    if check and p.returncode != 0:
        out = p.stdout.decode(errors="replace") if isinstance(p.stdout, bytes) else p.stdout
        raise AssertionError("%s exited with %d:\n%s" % (" ".join(args), p.returncode,
                                                         (out or "")[-6000:]))
    return p


# ---------------------------------------------------------------------------
# preconditions

def check_tools():
    if os.geteuid() != 0:
        skip_or_fail("not root (podman build and chroot need root)")
    missing = [t for t in ("podman", "debootstrap", "chroot", "tar") if not shutil.which(t)]
    if missing:
        skip_or_fail("%s not installed (apt-get install podman debootstrap)" % " ".join(missing))
    import mqtt_peers
    if not mqtt_peers.have_mosquitto():
        skip_or_fail("mosquitto not found at %s" % mqtt_peers.MOSQUITTO_BIN)


# ---------------------------------------------------------------------------
# the base image

def _deb822_stanzas(text):
    stanzas, cur, last = [], {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur, last = {}, None
            continue
        if line[0] in " \t" and last:
            cur[last] += " " + line.strip()
            continue
        k, _, v = line.partition(":")
        last = k.strip().lower()
        cur[last] = v.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def host_debian_sources():
    """[(uri, suite)] of the host's enabled Debian bookworm* deb entries (main)."""
    out = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            for st in _deb822_stanzas(f.read()):
                if "deb" not in st.get("types", "").split():
                    continue
                if st.get("enabled", "yes").lower() == "no":
                    continue
                if "main" not in st.get("components", "").split():
                    continue
                for uri in st.get("uris", "").split():
                    for suite in st.get("suites", "").split():
                        if suite.startswith("bookworm"):
                            out.append((uri, suite))
    paths = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in paths:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(line) >= 4 and line[0] == "deb" and line[2].startswith("bookworm") \
                    and "main" in line[3:]:
                out.append((line[1], line[2]))
    return out


def make_base():
    """The debootstrapped tree in BASE_DIR (made once, under a lock)."""
    os.makedirs(CACHE_ROOT, exist_ok=True)
    with open(os.path.join(CACHE_ROOT, "lock"), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        mark = os.path.join(BASE_DIR, BASE_MARK)
        if os.path.exists(mark) and open(mark).read().strip() == BASE_VERSION:
            log("base: reusing %s" % BASE_DIR)
            return False
        sources = host_debian_sources()
        mirror = next((u for u, s in sources if s == "bookworm"), "http://deb.debian.org/debian")
        partial = BASE_DIR + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        log("base: debootstrap --variant=minbase bookworm from %s (once; about a minute)"
            % mirror)
        run(["debootstrap", "--variant=minbase", "bookworm", partial, mirror], timeout=900)
        slim(partial, sources)
        with open(os.path.join(partial, BASE_MARK), "w") as f:
            f.write(BASE_VERSION + "\n")
        shutil.rmtree(BASE_DIR, ignore_errors=True)
        os.rename(partial, BASE_DIR)
        log("base: ready in %s" % BASE_DIR)
        return True


SLIM_DPKG = """\
# as in Docker's debian:*-slim images (debuerreotype --slimify)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
"""

APT_CLEAN = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""


def slim(root, sources):
    """Trims a debootstrapped tree the way Docker's slim image is trimmed, and
    points its apt at the mirrors the host uses (bookworm, -updates, -security)."""
    def rm_glob(pattern, keep=()):
        for p in glob.glob(os.path.join(root, pattern)):
            if any(p.endswith(k) for k in keep):
                continue
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)

    for pkg in glob.glob(os.path.join(root, "usr/share/doc/*")):
        if os.path.isdir(pkg) and not os.path.islink(pkg):
            rm_glob(os.path.join(os.path.relpath(pkg, root), "*"), keep=("/copyright",))
    for pattern in ("usr/share/info/*", "usr/share/man/*", "usr/share/groff/*",
                    "usr/share/lintian/overrides/*", "usr/share/linda/*"):
        rm_glob(pattern)
    rm_glob("usr/share/locale/*", keep=("/locale.alias",))
    rm_glob("var/cache/apt/archives/*.deb")
    rm_glob("var/cache/apt/*.bin")
    for p in glob.glob(os.path.join(root, "var/lib/apt/lists/*")):
        if os.path.isfile(p) and not p.endswith("/lock"):
            os.unlink(p)
    # the host's name and resolver: a container runtime (and podman build) supplies its own
    for name in ("etc/hostname", "etc/resolv.conf"):
        p = os.path.join(root, name)
        if os.path.lexists(p):
            os.unlink(p)
    with open(os.path.join(root, "etc/dpkg/dpkg.cfg.d/docker"), "w") as f:
        f.write(SLIM_DPKG)
    with open(os.path.join(root, "etc/apt/apt.conf.d/docker-clean"), "w") as f:
        f.write(APT_CLEAN)
    with open(os.path.join(root, "etc/apt/apt.conf.d/docker-no-languages"), "w") as f:
        f.write('Acquire::Languages "none";\n')
    if sources:
        seen, lines = set(), []
        for uri, suite in sources:
            if (uri, suite) not in seen:
                seen.add((uri, suite))
                lines.append("deb %s %s main" % (uri, suite))
        with open(os.path.join(root, "etc/apt/sources.list"), "w") as f:
            f.write("# the host's Debian mirrors (tests/docker/test_image.py)\n"
                    + "\n".join(lines) + "\n")


def podman_has(tag):
    return run(["podman", "image", "exists", tag], check=False).returncode == 0


BASE_LABEL = "org.wsgate.test-base"


def image_info(tag):
    """(id, labels) of a local image, or (None, {})."""
    p = run(["podman", "image", "inspect", tag], check=False)
    if p.returncode != 0:
        return None, {}
    d = json.loads(p.stdout)[0]
    return d["Id"], d.get("Labels") or {}


def ensure_base_image():
    """Both base tags name one image (a short name resolves to either,
    depending on podman's search order): the debootstrapped BASE_DIR, imported
    with a label. A real Docker Hub debian:bookworm-slim already there (not
    ours) is used as it is and never replaced or removed."""
    made = make_base()
    old = {t: image_info(t) for t in BASE_TAGS}
    hub_id, hub_labels = old["docker.io/library/debian:bookworm-slim"]
    if hub_id and BASE_LABEL not in hub_labels:
        log("base: using the registry's docker.io/library/debian:bookworm-slim found locally")
        run(["podman", "tag", hub_id, "localhost/debian:bookworm-slim"])
        return
    ids = {i for i, _ in old.values()}
    current = all(labels.get(BASE_LABEL) == BASE_VERSION for _, labels in old.values())
    if not made and current and len(ids) == 1 and None not in ids:
        log("base: podman already has %s" % " and ".join(BASE_TAGS))
        return
    log("base: podman import as %s" % " and ".join(BASE_TAGS))
    tar = subprocess.Popen(["tar", "-C", BASE_DIR, "--exclude=./" + BASE_MARK, "-c", "."],
                           stdout=subprocess.PIPE)
    try:
        p = run(["podman", "import", "-q", "--change", "LABEL %s=%s" % (BASE_LABEL, BASE_VERSION),
                 "--change", 'CMD ["bash"]', "-", BASE_TAGS[1]],
                stdin=tar.stdout, stderr=subprocess.PIPE, timeout=600)
    finally:
        tar.stdout.close()
        tar.wait()
    new_id = p.stdout.decode().strip().splitlines()[-1]
    for t in BASE_TAGS:
        run(["podman", "tag", new_id, t])
    for i, labels in old.values():
        if i and BASE_LABEL in labels and not new_id.startswith(i) and not i.startswith(new_id):
            # a base this test imported before: removed unless something still uses it
            run(["podman", "rmi", i], check=False)
    assert len({image_info(t)[0] for t in BASE_TAGS}) == 1


# ---------------------------------------------------------------------------
# the image

def build_image(tag):
    log("build: podman build -f docker/Dockerfile (tag %s)" % tag)
    p = run(["podman", "build", "--pull=never", "--isolation=chroot", "--network=host",
             "--format", "docker", "--layers=false", "-f", "docker/Dockerfile", "-t", tag, "."],
            cwd=SOURCE_DIR, timeout=1500, check=False)
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        raise AssertionError("podman build failed (%d):\n%s" % (p.returncode, out[-8000:]))
    log("build: done")


def inspect_image(tag):
    data = json.loads(run(["podman", "image", "inspect", tag]).stdout)[0]
    return data


def lookup_user(root, spec):
    """(uid, gid) of the image's USER "name[:group]" in its own /etc/passwd."""
    user, _, group = spec.partition(":")
    passwd = {}
    with open(os.path.join(root, "etc/passwd")) as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            passwd[fields[0]] = (int(fields[2]), int(fields[3]))
    groups = {}
    with open(os.path.join(root, "etc/group")) as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            groups[fields[0]] = int(fields[2])
    if user.isdigit():
        uid = int(user)
        gid = next((g for u, g in passwd.values() if u == uid), None)
    else:
        assert user in passwd, "USER %r is not in the image's /etc/passwd" % user
        uid, gid = passwd[user]
    if group:
        gid = int(group) if group.isdigit() else groups[group]
    assert gid is not None, "no group for USER %r" % spec
    return uid, gid


def export_image(tag, dest):
    name = "wsgate-test-export-%d" % os.getpid()
    run(["podman", "create", "--name", name, tag])
    try:
        exp = subprocess.Popen(["podman", "export", name], stdout=subprocess.PIPE)
        try:
            run(["tar", "-x", "-C", dest, "--numeric-owner"], stdin=exp.stdout, timeout=300)
        finally:
            exp.stdout.close()
            exp.wait()
        assert exp.returncode == 0, "podman export exited with %d" % exp.returncode
    finally:
        run(["podman", "rm", "-f", name], check=False)


# ---------------------------------------------------------------------------
# compose.yaml: what can be checked without an engine

def check_compose(root):
    try:
        import yaml
    except ImportError:
        log("compose: python3-yaml missing, compose.yaml not checked")
        return
    path = os.path.join(SOURCE_DIR, "docker", "compose.yaml")
    with open(path) as f:
        doc = yaml.safe_load(f)
    services = doc["services"]
    assert {"wsgate", "echo", "mosquitto"} <= set(services), services.keys()
    compose_dir = os.path.dirname(path)
    for name, svc in services.items():
        b = svc.get("build")
        if b:
            ctx = os.path.normpath(os.path.join(compose_dir, b["context"]))
            assert os.path.isfile(os.path.join(ctx, b["dockerfile"])), (name, b)
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert os.path.exists(os.path.join(compose_dir, src)), (name, v)
    gw = services["wsgate"]
    assert any(str(p).endswith(":8080") for p in gw.get("ports", [])), gw.get("ports")
    mounted = [v.split(":") for v in gw.get("volumes", [])]
    cfg_src = next(os.path.join(compose_dir, m[0]) for m in mounted
                   if m[1] == "/etc/wsgate/wsgate.json")
    with open(cfg_src) as f:
        cfg = json.load(f)
    assert cfg["listen"][0]["port"] == 8080, cfg["listen"]
    echo = services["echo"]
    ep = echo["entrypoint"]
    assert os.access(os.path.join(root, ep[0].lstrip("/")), os.X_OK), ep
    echo_port = int(ep[ep.index("--port") + 1])
    tcp_targets = [(r["target"]["host"], r["target"]["port"]) for r in cfg["routes"]
                   if r["type"] == "tcp"]
    assert ("echo", echo_port) in tcp_targets, (tcp_targets, echo_port)
    uris = [b["uri"] for b in cfg["brokers"].values()]
    assert "tcp://mosquitto:1883" in uris, uris
    assert echo.get("healthcheck", {}).get("disable") is True, \
        "the echo service runs no gateway: the image's HEALTHCHECK must be disabled there"
    log("compose: services %s, mounts and the wsgate config agree" % sorted(services))


# ---------------------------------------------------------------------------
# running the image's filesystem

def chroot_argv(root, uid, gid, argv):
    return ["chroot", "--userspec=%d:%d" % (uid, gid), "--groups=%d" % gid, root] + list(argv)


def image_env(cfg):
    env = {}
    for kv in cfg.get("Env") or []:
        k, _, v = kv.partition("=")
        env[k] = v
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return env


def healthcheck_argv(data):
    # podman keeps it at the top level of the inspect output, docker in Config
    hc = data.get("Healthcheck") or (data.get("Config") or {}).get("Healthcheck") or {}
    test = hc.get("Test") or []
    assert test and test[0] in ("CMD", "CMD-SHELL"), "no HEALTHCHECK in the image: %r" % hc
    if test[0] == "CMD":
        return test[1:], hc
    return ["/bin/sh", "-c", test[1]], hc


def run_healthcheck(root, uid, gid, env, argv, hc):
    timeout_s = (hc.get("Timeout") or 30 * 10**9) / 1e9
    p = subprocess.run(chroot_argv(root, uid, gid, argv), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       timeout=timeout_s + 5)
    return p.returncode, p.stdout.decode(errors="replace").strip()


def prepare_root(root):
    """What a container runtime would provide and an exported tree lacks."""
    dev = os.path.join(root, "dev")
    os.makedirs(dev, exist_ok=True)
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("urandom", 1, 9),
                               ("random", 1, 8)):
        p = os.path.join(dev, name)
        if not os.path.exists(p):
            os.mknod(p, 0o666 | 0o020000, os.makedev(major, minor))
            os.chmod(p, 0o666)
    os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    # compose's service names, as its DNS would answer them (here all on loopback):
    # the test config names its backends the way docker/wsgate.compose.json does
    with open(os.path.join(root, "etc/hosts"), "w") as f:
        f.write("127.0.0.1\tlocalhost echo mosquitto\n::1\tlocalhost ip6-localhost\n")


def start_in_chroot(h, name, root, uid, gid, env, argv):
    import harness
    n = len(h.processes)
    log_path = h.path("%s-%d.stderr" % (name, n))
    out_path = h.path("%s-%d.stdout" % (name, n))
    with open(log_path, "wb") as errf, open(out_path, "wb") as outf:
        proc = harness.popen(chroot_argv(root, uid, gid, argv), stdout=outf, stderr=errf,
                             env=env)
    p = harness.Process(name, proc, log_path, out_path)
    h.processes.append(p)
    return p


def wait_echo_listening(p, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(p.out_path) as f:
            if "listening on" in f.read():
                return
        if p.proc.poll() is not None:
            raise AssertionError("wsgate-echo exited (%s): %s" % (p.proc.returncode, p.log()))
        time.sleep(0.05)
    raise AssertionError("wsgate-echo did not say it was listening within %ss" % timeout)


def wait_health(port, gw, timeout=10.0):
    import harness
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if gw.proc.poll() is not None:
            raise AssertionError("wsgate exited with %s at start:\n%s"
                                 % (gw.proc.returncode, gw.log()))
        try:
            last = harness.http_get(port, "/healthz", timeout=1.0)
            if last.status == 200:
                return last
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise AssertionError("/healthz did not answer 200 within %ss: %r\n%s"
                         % (timeout, last, gw.log()))


def exercise(root, uid, gid, data):
    import harness
    import mqtt_peers

    cfg = data.get("Config") or {}
    env = image_env(cfg)
    h = harness.Harness()
    ok = False
    try:
        mosq = mqtt_peers.Mosquitto(h)
        echo_port = harness.free_port()
        echo_argv = ["/usr/bin/wsgate-echo", "--host", "127.0.0.1", "--port", str(echo_port)]
        echo = start_in_chroot(h, "wsgate-echo", root, uid, gid, env, echo_argv)
        wait_echo_listening(echo)
        log("run: wsgate-echo from the image on 127.0.0.1:%d (uid %d), mosquitto on the "
            "host on %d" % (echo_port, uid, mosq.port))

        port = harness.free_port()
        client_id = mqtt_peers.unique_id("wsgate-image")
        test_cfg = {
            "listen": [{"host": "127.0.0.1", "port": port}],
            "static": {"mount": "/", "dir": "/usr/share/wsgate/www"},
            "brokers": {"main": {"uri": "tcp://mosquitto:%d" % mosq.port,
                                 "client_id": client_id}},
            "routes": [
                {"name": "echo", "path": "/echo", "type": "tcp", "subprotocols": ["binary"],
                 "target": {"host": "echo", "port": echo_port}},
                {"name": "bus", "path": "/bus", "type": "mqtt", "broker": "main",
                 "format": "envelope",
                 "publish": {"allow": ["demo/+/in"], "qos": 1},
                 "subscribe": {"allow": ["demo/#"]}},
            ],
        }
        # In place of the image's config, as `-v my.json:/etc/wsgate/wsgate.json` would be.
        with open(os.path.join(root, "etc/wsgate/wsgate.json"), "w") as f:
            json.dump(test_cfg, f, indent=2)

        hc_argv, hc = healthcheck_argv(data)
        rc, out = run_healthcheck(root, uid, gid, env, hc_argv, hc)
        assert rc == 1, "HEALTHCHECK with no gateway running: exit %d (%s), wanted 1" % (rc, out)
        log("healthcheck before start: exit 1 (%s)" % out.splitlines()[-1])

        gw_argv = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
        log("run: %s as uid %d gid %d" % (" ".join(gw_argv), uid, gid))
        gw = start_in_chroot(h, "wsgate", root, uid, gid, env, gw_argv)
        r = wait_health(port, gw)
        assert r.json() == {"status": "ok"}, r
        log("run: /healthz 200 %s" % r.body.decode().strip())
        with open("/proc/%d/status" % gw.proc.pid) as f:
            ids = {l.split(":")[0]: l.split()[1:] for l in f if l.startswith(("Uid", "Gid"))}
        assert set(ids["Uid"]) == {str(uid)} and set(ids["Gid"]) == {str(gid)}, ids
        log("run: the gateway runs as uid %d gid %d (pid %d)" % (uid, gid, gw.proc.pid))

        rc, out = run_healthcheck(root, uid, gid, env, hc_argv, hc)
        assert rc == 0, "HEALTHCHECK %r exited %d: %s\n%s" % (hc_argv, rc, out, gw.log())
        log("healthcheck: exit 0 (%s)" % out)

        page = harness.http_get(port, "/")
        assert page.status == 200 and b"<html" in page.body.lower(), page
        js = harness.http_get(port, "/demo.js")
        assert js.status == 200, js
        # The page imports the envelope client (clients/js/, copied into www/).
        client_js = harness.http_get(port, "/wsgate-client.js")
        assert client_js.status == 200 and b"class WsgateClient" in client_js.body, client_js
        log("run: demo page / (%d bytes), /demo.js and /wsgate-client.js served from "
            "/usr/share/wsgate/www" % len(page.body))

        # echo over WebSocket, through the image's wsgate to the image's wsgate-echo
        ws = mqtt_peers.WsClient(port, "/echo")

        def echoed(n):
            # a tcp route's default "message": "binary": the bytes come back as
            # binary frames, split wherever the backend's reads fell
            got = b""
            while len(got) < n:
                op, data = ws.recv()
                assert op == harness.OP_BINARY, (op, data[:100])
                got += data
            return got

        text = "hello from the image test \u00e9"
        ws.send_text(text)
        assert echoed(len(text.encode())) == text.encode(), "text echo differs"
        blob = bytes(range(256)) * 8
        ws.send_binary(blob)
        assert echoed(len(blob)) == blob, "binary echo differs"
        code, _ = ws.close()
        assert code == 1000, code
        log("run: /echo round trip (text, %d bytes binary), closed 1000" % len(blob))

        # MQTT envelope both ways
        mosq.wait_connected(client_id, 1, timeout=10.0)
        bus = mqtt_peers.WsClient(port, "/bus")
        bus.send_json({"subscribe": "demo/#", "qos": 1, "id": "s1"})
        assert bus.recv_json() == {"ack": "s1"}
        sub = mqtt_peers.Subscriber(h, mosq.port, "demo/+/in")
        bus.send_json({"topic": "demo/test/in", "payload": {"n": 1}, "qos": 1, "id": 7})
        msgs = [bus.recv_json(), bus.recv_json()]
        # our own publish comes back (demo/# covers demo/test/in) and so does its ack
        assert {"ack": 7} in msgs, msgs
        assert {"topic": "demo/test/in", "payload": {"n": 1}} in msgs, msgs
        got = sub.wait_for(1)
        assert got[0][:2] == ("demo/test/in", b'{"n":1}'), got
        mqtt_peers.publish_once(mosq.port, "demo/cli/out", "hello browser", qos=1)
        m = bus.recv_json()
        assert m == {"topic": "demo/cli/out", "payload": "hello browser"}, m
        bus.send_json({"topic": "elsewhere/x", "payload": "no", "id": 8})
        err = bus.recv_json()
        assert err.get("error", {}).get("code") == "not_allowed", err
        bus.close()
        log("run: /bus envelope subscribe, publish (ack, broker got it), broker→browser, "
            "not_allowed outside the allow list")

        m = harness.http_get(port, "/metrics")
        assert m.status == 200 and b"wsgate_connections_total" in m.body, m

        os.kill(gw.proc.pid, signal.SIGTERM)
        try:
            rc = gw.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError("wsgate did not exit within 10 s of SIGTERM")
        gw.returncode = rc
        harness._live_procs.discard(gw.proc)
        assert rc == 0, "wsgate exited %d on SIGTERM:\n%s" % (rc, gw.log())
        log("run: SIGTERM → exit 0")
        ok = True
    finally:
        try:
            h.close()
        finally:
            if not ok:
                for name, text in h.logs():
                    print("----- %s -----\n%s" % (name, text[-4000:]), flush=True)


# ---------------------------------------------------------------------------

def main():
    check_tools()
    tag = "localhost/wsgate-test:%d" % os.getpid()
    tmp = tempfile.mkdtemp(prefix="wsgate-image-")
    root = os.path.join(tmp, "rootfs")
    os.makedirs(root)
    built = False
    try:
        ensure_base_image()
        build_image(tag)
        built = True
        data = inspect_image(tag)
        cfg = data.get("Config") or {}
        size_mb = data["Size"] / 1e6
        log("image: %.1f MB; User %r; Entrypoint %r; Cmd %r; Healthcheck %r; Exposed %r"
            % (size_mb, cfg.get("User"), cfg.get("Entrypoint"), cfg.get("Cmd"),
               healthcheck_argv(data)[0], sorted(cfg.get("ExposedPorts") or {})))
        print("IMAGE_SIZE_MB=%.1f" % size_mb, flush=True)
        assert size_mb <= MAX_MB, "image is %.1f MB, more than %.0f MB" % (size_mb, MAX_MB)
        assert cfg.get("User"), "the image has no USER: it would run as root"
        assert "8080/tcp" in (cfg.get("ExposedPorts") or {}), cfg.get("ExposedPorts")

        export_image(tag, root)
        uid, gid = lookup_user(root, cfg["User"])
        assert uid != 0, "USER %r is root" % cfg["User"]
        prepare_root(root)
        env = image_env(cfg)

        # the baked config and the compose config pass the image's own checker
        for cfg_path in ("/etc/wsgate/wsgate.json", None):
            if cfg_path is None:
                shutil.copy(os.path.join(SOURCE_DIR, "docker", "wsgate.compose.json"),
                            os.path.join(root, "tmp", "compose.json"))
                cfg_path = "/tmp/compose.json"
            p = run(chroot_argv(root, uid, gid, [cfg["Entrypoint"][0], "-c", cfg_path,
                                                 "--check"]), env=env, check=False, timeout=30)
            out = p.stdout.decode(errors="replace").strip()
            assert p.returncode == 0, "wsgate --check %s in the image: %s" % (cfg_path, out)
            log("check: %s: %s" % (cfg_path, out))
        check_compose(root)

        exercise(root, uid, gid, data)
        log("PASS (image %.1f MB)" % size_mb)
    finally:
        if KEEP:
            log("kept: image %s, tree %s" % (tag, root))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            if built:
                run(["podman", "rmi", "-f", tag], check=False)


if __name__ == "__main__":
    main()
