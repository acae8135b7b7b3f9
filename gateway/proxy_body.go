package gateway

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
)

// replayBody is how a request's body is sent on each attempt: from memory
// (any number of times) or streamed from the client (at most once).
type replayBody struct {
	buf      []byte                        // the whole body, when it fit the limit
	buffered bool                          // buf holds the body (possibly empty)
	getBody  func() (io.ReadCloser, error) // the request's own GetBody
	stream   *onceBody                     // the body, when it did not fit
	length   int64                         // ContentLength for attempts
}

// newReplayBody prepares r's body for attempts: no body, the request's
// GetBody, the body read into memory when it has at most limit bytes, or
// else the body streamed once. It reads the client's body only in the
// third case; its error is the client's body error (such as
// *http.MaxBytesError).
func newReplayBody(r *http.Request, limit int64) (*replayBody, error) {
	switch {
	case r.Body == nil || r.Body == http.NoBody:
		return &replayBody{buffered: true}, nil
	case r.GetBody != nil:
		return &replayBody{getBody: r.GetBody, length: r.ContentLength}, nil
	case r.ContentLength > limit:
		return &replayBody{stream: &onceBody{r: r.Body}, length: r.ContentLength}, nil
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		rest := io.MultiReader(bytes.NewReader(buf.Bytes()), r.Body)
		return &replayBody{stream: &onceBody{r: rest}, length: r.ContentLength}, nil
	}
	// The body is here already: asking the node for 100-continue is moot.
	r.Header.Del("Expect")
	return &replayBody{buf: buf.Bytes(), buffered: true, length: int64(buf.Len())}, nil
}

// attach sets out's body for one attempt.
func (b *replayBody) attach(out *http.Request) error {
	switch {
	case b.stream != nil:
		out.Body, out.ContentLength, out.GetBody = b.stream, b.length, nil
	case b.getBody != nil:
		rc, err := b.getBody()
		if err != nil {
			return err
		}
		out.Body, out.ContentLength, out.GetBody = rc, b.length, b.getBody
	case len(b.buf) == 0:
		out.Body, out.ContentLength, out.GetBody = http.NoBody, 0, nil
		out.TransferEncoding = nil
	default:
		out.Body, out.ContentLength, out.GetBody = b.reader(), b.length, b.newReader
		out.TransferEncoding = nil
	}
	return nil
}

func (b *replayBody) reader() io.ReadCloser { return io.NopCloser(bytes.NewReader(b.buf)) }

func (b *replayBody) newReader() (io.ReadCloser, error) { return b.reader(), nil }

// canRetry reports whether the request may be sent again after an attempt
// that failed. sent says whether that attempt may have reached the node.
// A streamed body can go again only if the attempt failed before sending
// anything and no byte of it was read.
func (b *replayBody) canRetry(sent bool) bool {
	if b.stream == nil {
		return true
	}
	return !sent && !b.stream.read.Load()
}

// onceBody is a streamed request body. It records whether it was read,
// and its Close does nothing: the transport closes a request's body after
// a failed attempt, but the client's body belongs to the HTTP server.
type onceBody struct {
	r    io.Reader
	read atomic.Bool
}

func (o *onceBody) Read(p []byte) (int, error) {
	o.read.Store(true)
	return o.r.Read(p)
}

func (o *onceBody) Close() error { return nil }
