// relay.go - bench/run.sh's Go peer: the WebSocket <-> TCP relay a developer would write
// in Go instead of C, on gorilla/websocket (Debian's golang-github-gorilla-websocket-dev).
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o relay relay.go
//	./relay -listen 127.0.0.1:8081 -backend 127.0.0.1:9000 [-compression]
//
// Each WebSocket (any path, subprotocol "binary" accepted) gets its own backend TCP
// connection and one goroutine per direction: binary messages' payloads go to the
// backend, whatever the backend sends comes back as one binary message per read.
// Backpressure is the blocking writes: a direction whose writer is stuck stops reading.
// Either side closing ends both. -compression turns on gorilla's permessage-deflate
// (EnableCompression: it always answers with no context takeover both ways).
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"net/http"

	"github.com/gorilla/websocket"
)

const bufSize = 64 * 1024

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to accept WebSockets on")
	backend := flag.String("backend", "127.0.0.1:9000", "backend TCP address")
	compression := flag.Bool("compression", false, "negotiate permessage-deflate")
	flag.Parse()

	upgrader := websocket.Upgrader{
		ReadBufferSize:    bufSize,
		Subprotocols:      []string{"binary"},
		CheckOrigin:       func(*http.Request) bool { return true }, // a benchmark, not an edge
		EnableCompression: *compression,
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade has answered the client already
		}
		tcp, err := net.Dial("tcp", *backend)
		if err != nil {
			ws.Close()
			return
		}
		go wsToTCP(ws, tcp)
		tcpToWS(tcp, ws)
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}

// wsToTCP copies each message's payload to the backend through one reused buffer
// (ReadMessage would allocate a slice per message).
func wsToTCP(ws *websocket.Conn, tcp net.Conn) {
	defer tcp.Close() // ends tcpToWS's read, which closes the WebSocket
	buf := make([]byte, bufSize)
	for {
		_, msg, err := ws.NextReader()
		if err != nil {
			return
		}
		for {
			n, err := msg.Read(buf)
			if n > 0 {
				if _, werr := tcp.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
	}
}

// tcpToWS sends whatever one read of the backend returns as one binary message.
func tcpToWS(tcp net.Conn, ws *websocket.Conn) {
	defer ws.Close() // ends wsToTCP's read, which closes the backend
	buf := make([]byte, bufSize)
	for {
		n, err := tcp.Read(buf)
		if err != nil {
			return
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, buf[:n]); err != nil {
			return
		}
	}
}
