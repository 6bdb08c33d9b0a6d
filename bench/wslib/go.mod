module github.com/viaduct-sip/viaduct/bench/wslib

go 1.26.0

require (
	github.com/coder/websocket v1.8.15
	github.com/gobwas/httphead v0.1.0
	github.com/gobwas/ws v1.5.0
	github.com/gorilla/websocket v1.5.3
)
