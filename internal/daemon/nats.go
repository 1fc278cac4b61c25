package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	v1 "github.com/devicemesh/federation/api/federation/v1"
)

// NATS conventions (see api/README.md):
//
//   - Request/reply: a request on "<prefix>.<Method>" (the schema's method
//     name, such as "fed.laptop.Put") carries the method's request message
//     in binary protobuf; the reply carries its response message. An error
//     reply has an empty body and the headers HeaderCode (a Connect code
//     name such as "invalid_argument") and HeaderError (the message).
//   - Server streaming methods (Subscribe, Invite, Join, Backup): every
//     stream message is published to the request's reply subject; the last
//     message has the header HeaderEnd (and HeaderCode/HeaderError when
//     the stream failed) and an empty body. Publishing the reply subject to
//     "<prefix>.Cancel" ends the stream early. Subscribe's first message
//     is empty with the header HeaderReady: the subscription is live.
//   - Events: every event is published, as an Event message, on
//     "<prefix>.events.<collection>", the collection's name as a subject
//     token (EventToken); events without a collection (sessions, registry)
//     on "<prefix>.events.~".
const (
	HeaderCode  = "Fed-Code"
	HeaderError = "Fed-Error"
	HeaderEnd   = "Fed-End"
	// HeaderReady marks the empty first message of a Subscribe stream:
	// the subscription is live (what the response headers say on Connect).
	HeaderReady = "Fed-Ready"
)

// natsMethod serves one method.
type natsMethod struct {
	stream bool
	// call decodes data and runs the method; send publishes a stream
	// message (streams) and res is the unary response.
	call func(ctx context.Context, data []byte, send func(proto.Message) error) (proto.Message, error)
}

func unaryNATS[Req any, Res any, PReq interface {
	*Req
	proto.Message
}, PRes interface {
	*Res
	proto.Message
}](f func(context.Context, PReq) (PRes, error)) natsMethod {
	return natsMethod{call: func(ctx context.Context, data []byte, _ func(proto.Message) error) (proto.Message, error) {
		req := PReq(new(Req))
		if err := Decode(data, req, false); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
		return f(ctx, req)
	}}
}

func streamNATS[Req any, Msg any, PReq interface {
	*Req
	proto.Message
}, PMsg interface {
	*Msg
	proto.Message
}](f func(context.Context, PReq, func(PMsg) error) error) natsMethod {
	return natsMethod{stream: true, call: func(ctx context.Context, data []byte, send func(proto.Message) error) (proto.Message, error) {
		req := PReq(new(Req))
		if err := Decode(data, req, false); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
		return nil, f(ctx, req, func(m PMsg) error {
			if m == nil {
				return send(nil) // the Connect header flush: HeaderReady
			}
			return send(m)
		})
	}}
}

func (s *Service) natsMethods() map[string]natsMethod {
	return map[string]natsMethod{
		"Put":             unaryNATS(s.Put),
		"Get":             unaryNATS(s.Get),
		"Delete":          unaryNATS(s.Delete),
		"Batch":           unaryNATS(s.Batch),
		"Scan":            unaryNATS(s.Scan),
		"SetProfileField": unaryNATS(s.SetProfileField),
		"GetProfile":      unaryNATS(s.GetProfile),
		"AppendMessage":   unaryNATS(s.AppendMessage),
		"ListMessages":    unaryNATS(s.ListMessages),
		"Approve":         unaryNATS(s.Approve),
		"Devices":         unaryNATS(s.Devices),
		"Revoke":          unaryNATS(s.Revoke),
		"Conflicts":       unaryNATS(s.Conflicts),
		"Resolve":         unaryNATS(s.Resolve),
		"Fetch":           unaryNATS(s.Fetch),
		"Stats":           unaryNATS(s.Stats),
		"Health":          unaryNATS(s.Health),
		"Subscribe":       streamNATS(s.Subscribe),
		"Invite":          streamNATS(s.Invite),
		"Join":            streamNATS(s.Join),
		"Backup":          streamNATS(s.Backup),
	}
}

var plainToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// EventToken returns the subject token of a collection's events: the name
// itself when it is made of letters, digits, '_' and '-', else "~"
// followed by the name in hex; "~" alone for events without a collection.
func EventToken(collection string) string {
	if plainToken.MatchString(collection) {
		return collection
	}
	return "~" + hex.EncodeToString([]byte(collection))
}

var validPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// NATSServer is the NATS front door of a Service.
type NATSServer struct {
	s      *Service
	nc     *nats.Conn
	prefix string
	log    *slog.Logger

	methods map[string]natsMethod
	sub     *nats.Subscription
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	streams map[string]context.CancelFunc // reply subject -> cancel
}

// ServeNATS answers the API on nc under prefix and publishes the node's
// events, until Close. nc stays the caller's.
func ServeNATS(nc *nats.Conn, prefix string, s *Service) (*NATSServer, error) {
	if !validPrefix.MatchString(prefix) {
		return nil, fmt.Errorf("nats: subject prefix %q: want dot-separated tokens of letters, digits, '_' and '-'", prefix)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &NATSServer{s: s, nc: nc, prefix: prefix, log: s.log, methods: s.natsMethods(), ctx: ctx, cancel: cancel,
		streams: map[string]context.CancelFunc{}}
	sub, err := nc.Subscribe(prefix+".*", n.handle)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("nats: subscribe %s.*: %w", prefix, err)
	}
	n.sub = sub
	// Publish events until Close; Subscribe returns when ctx ends. ServeNATS
	// returns only once the node's subscription is live, so an event of a
	// write made after it returns is never missed.
	ready := make(chan struct{})
	var once sync.Once
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer once.Do(func() { close(ready) })
		_ = s.Subscribe(ctx, &v1.SubscribeRequest{}, func(e *v1.Event) error {
			if e == nil {
				once.Do(func() { close(ready) }) // subscribed
				return nil
			}
			data, err := proto.Marshal(e)
			if err != nil {
				return err
			}
			if err := nc.Publish(prefix+".events."+eventSubject(e), data); err != nil {
				n.log.Warn("nats: publish event", "err", err)
			}
			return nil
		})
	}()
	<-ready
	if err := nc.Flush(); err != nil {
		n.Close()
		return nil, fmt.Errorf("nats: flush: %w", err)
	}
	return n, nil
}

func eventSubject(e *v1.Event) string {
	if e.GetCollection() == "" {
		return "~"
	}
	return EventToken(e.GetCollection())
}

// Close stops answering, ends the streams and waits for the handlers.
func (n *NATSServer) Close() {
	if n.sub != nil {
		_ = n.sub.Unsubscribe()
	}
	n.cancel()
	n.wg.Wait()
}

func errorMsg(subject string, err error) *nats.Msg {
	m := nats.NewMsg(subject)
	ce := new(connect.Error)
	if !errors.As(ToConnectError(err), &ce) {
		ce = connect.NewError(connect.CodeInternal, err)
	}
	m.Header.Set(HeaderCode, ce.Code().String())
	m.Header.Set(HeaderError, strings.ReplaceAll(ce.Message(), "\n", " "))
	return m
}

func (n *NATSServer) handle(msg *nats.Msg) {
	method := strings.TrimPrefix(msg.Subject, n.prefix+".")
	if method == "Cancel" {
		n.mu.Lock()
		if c, ok := n.streams[string(msg.Data)]; ok {
			c()
		}
		n.mu.Unlock()
		return
	}
	if msg.Reply == "" {
		return // nobody to answer
	}
	m, ok := n.methods[method]
	if !ok {
		_ = n.nc.PublishMsg(errorMsg(msg.Reply, connect.NewError(connect.CodeUnimplemented, fmt.Errorf("no method %q (subjects are %s.<Method>)", method, n.prefix))))
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.serve(m, msg)
	}()
}

func (n *NATSServer) serve(m natsMethod, msg *nats.Msg) {
	ctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	if m.stream {
		n.mu.Lock()
		n.streams[msg.Reply] = cancel
		n.mu.Unlock()
		defer func() {
			n.mu.Lock()
			delete(n.streams, msg.Reply)
			n.mu.Unlock()
		}()
	}
	send := func(pm proto.Message) error {
		if pm == nil {
			ready := nats.NewMsg(msg.Reply)
			ready.Header.Set(HeaderReady, "1")
			return n.nc.PublishMsg(ready)
		}
		data, err := proto.Marshal(pm)
		if err != nil {
			return err
		}
		return n.nc.Publish(msg.Reply, data)
	}
	res, err := m.call(ctx, msg.Data, send)
	var out *nats.Msg
	switch {
	case err != nil:
		out = errorMsg(msg.Reply, err)
	case m.stream:
		out = nats.NewMsg(msg.Reply)
	default:
		data, merr := proto.Marshal(res)
		if merr != nil {
			out = errorMsg(msg.Reply, merr)
			break
		}
		out = nats.NewMsg(msg.Reply)
		out.Data = data
	}
	if m.stream {
		out.Header.Set(HeaderEnd, "1")
	}
	if perr := n.nc.PublishMsg(out); perr != nil {
		n.log.Warn("nats: reply", "err", perr)
	}
}
