"""Remote access: `virtsnap rpc --stdio URI`, the server at the far end of an ssh pipe (server.py), and the
wire format both ends share (protocol.py). The client is the `+ssh` driver in drivers/remote.py."""
