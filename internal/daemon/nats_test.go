package daemon_test

import (
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	v1 "github.com/devicemesh/federation/api/federation/v1"
	"github.com/devicemesh/federation/internal/daemon"
)

// startNATS runs an embedded NATS server on a free loopback port.
func startNATS(t *testing.T) string {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second), "nats server did not start")
	t.Cleanup(ns.Shutdown)
	return ns.ClientURL()
}

// call sends a request on subject and decodes the reply into res, or
// returns the error headers.
func call(t *testing.T, nc *nats.Conn, subject string, req proto.Message, res proto.Message) (code, msg string) {
	t.Helper()
	data, err := proto.Marshal(req)
	require.NoError(t, err)
	return callRaw(t, nc, subject, data, res)
}

func callRaw(t *testing.T, nc *nats.Conn, subject string, data []byte, res proto.Message) (code, msg string) {
	t.Helper()
	reply, err := nc.Request(subject, data, 10*time.Second)
	require.NoError(t, err)
	if c := reply.Header.Get(daemon.HeaderCode); c != "" {
		return c, reply.Header.Get(daemon.HeaderError)
	}
	require.NoError(t, proto.Unmarshal(reply.Data, res))
	return "", ""
}

// TestNATSFrontDoor serves a daemon's API on an embedded NATS server:
// request/reply with the schema's messages, errors in headers, a stream
// (Subscribe) to an inbox and its cancellation, and events published on
// the subject of their collection.
func TestNATSFrontDoor(t *testing.T) {
	url := startNATS(t)
	d := startDaemon(t, "bus", daemon.Config{NATSURL: url, NATSPrefix: "fed.bus"})
	require.Equal(t, "fed.bus", d.info.NATSPrefix)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()

	// Events per collection: notes only, and one with an odd name.
	notes, err := nc.SubscribeSync("fed.bus.events.notes")
	require.NoError(t, err)
	odd, err := nc.SubscribeSync("fed.bus.events." + daemon.EventToken("my notes.v2"))
	require.NoError(t, err)
	require.Equal(t, "~6d79206e6f7465732e7632", daemon.EventToken("my notes.v2"))
	require.NoError(t, nc.Flush())

	code, msg := call(t, nc, "fed.bus.Put", &v1.PutRequest{Collection: "notes", Key: "k", Value: []byte("over nats")}, &v1.PutResponse{})
	require.Empty(t, code, msg)
	var got v1.GetResponse
	code, msg = call(t, nc, "fed.bus.Get", &v1.GetRequest{Collection: "notes", Key: "k"}, &got)
	require.Empty(t, code, msg)
	require.Equal(t, "over nats", string(got.Record.Value))
	code, msg = call(t, nc, "fed.bus.Put", &v1.PutRequest{Collection: "my notes.v2", Key: "k", Value: []byte("odd")}, &v1.PutResponse{})
	require.Empty(t, code, msg)

	m, err := notes.NextMsg(5 * time.Second)
	require.NoError(t, err)
	var ev v1.Event
	require.NoError(t, proto.Unmarshal(m.Data, &ev))
	require.Equal(t, v1.EventKind_EVENT_KIND_CHANGE, ev.Kind)
	require.Equal(t, "k", ev.Key)
	require.True(t, ev.Local)
	m, err = odd.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.NoError(t, proto.Unmarshal(m.Data, &ev))
	require.Equal(t, "my notes.v2", ev.Collection)
	_, err = notes.NextMsg(100 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "the odd collection's event is not on the notes subject")

	// Errors: not found, unknown field, unknown method, oversized value.
	code, msg = call(t, nc, "fed.bus.Get", &v1.GetRequest{Collection: "notes", Key: "absent"}, &got)
	require.Equal(t, "not_found", code, msg)
	data, err := proto.Marshal(&v1.GetRequest{Collection: "notes", Key: "k"})
	require.NoError(t, err)
	data = protowire.AppendTag(data, 77, protowire.VarintType)
	data = protowire.AppendVarint(data, 1)
	code, msg = callRaw(t, nc, "fed.bus.Get", data, &got)
	require.Equal(t, "invalid_argument", code)
	require.Contains(t, msg, "unknown field")
	code, msg = call(t, nc, "fed.bus.Gett", &v1.GetRequest{}, &got)
	require.Equal(t, "unimplemented", code, msg)
	code, msg = call(t, nc, "fed.bus.Put", &v1.PutRequest{Collection: "notes", Key: "k", Value: make([]byte, 600<<10)}, &v1.PutResponse{})
	require.Empty(t, code, "a value within the bus's payload limit: %s", msg)
	code, msg = call(t, nc, "fed.bus.Fetch", &v1.FetchRequest{Collection: "media", Keys: []string{"not-a-stub"}}, &v1.FetchResponse{})
	require.Empty(t, code, "Fetch goes to the node: %s", msg)

	// A stream to an inbox: Subscribe, then cancel it.
	inbox := nats.NewInbox()
	stream, err := nc.SubscribeSync(inbox)
	require.NoError(t, err)
	sreq, err := proto.Marshal(&v1.SubscribeRequest{Collections: []string{"notes"}})
	require.NoError(t, err)
	require.NoError(t, nc.PublishRequest("fed.bus.Subscribe", inbox, sreq))
	m, err = stream.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "1", m.Header.Get(daemon.HeaderReady), "the first message says the subscription is live")
	code, msg = call(t, nc, "fed.bus.Delete", &v1.DeleteRequest{Collection: "notes", Key: "k"}, &v1.DeleteResponse{})
	require.Empty(t, code, msg)
	m, err = stream.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Empty(t, m.Header.Get(daemon.HeaderEnd))
	require.NoError(t, proto.Unmarshal(m.Data, &ev))
	require.True(t, ev.Deleted)
	require.NoError(t, nc.Publish("fed.bus.Cancel", []byte(inbox)))
	m, err = stream.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "1", m.Header.Get(daemon.HeaderEnd), "the cancelled stream ends")
	require.Equal(t, "canceled", m.Header.Get(daemon.HeaderCode))

	// Health over the bus names the same device as over the socket.
	var h v1.HealthResponse
	code, msg = call(t, nc, "fed.bus.Health", &v1.HealthRequest{}, &h)
	require.Empty(t, code, msg)
	require.Equal(t, d.info.Device, h.Device)
}
