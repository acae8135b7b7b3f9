package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"time"

	"github.com/pocketbase/pocketbase/plugins/jsvm"
	"github.com/pocketbase/pocketbase/tools/filesystem"
	"github.com/spf13/cast"

	"github.com/pbe/pbe/internal/egress"
)

// safeClient is the HTTP client of tenant code. It connects only where
// the node's egress policy allows (public addresses; see package egress),
// ignores proxy settings, and bounds time and response size.
type safeClient struct {
	client   *http.Client
	timeout  time.Duration
	maxBytes int64
}

func newSafeClient(cfg Config) *safeClient {
	transport := egress.Guard{Allow: cfg.HTTPAllow, Deny: cfg.HTTPDeny}.Transport(cfg.HTTPTimeout)
	return &safeClient{
		client: &http.Client{
			Transport: transport,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return errors.New("stopped after 5 redirects")
				}
				return nil
			},
		},
		timeout:  cfg.HTTPTimeout,
		maxBytes: cfg.HTTPMaxBytes,
	}
}

// do sends req within the limits and reads the whole response body.
func (c *safeClient) do(req *http.Request) (*http.Response, []byte, error) {
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, nil, fmt.Errorf("only http and https URLs can be fetched, not %q", req.URL.Scheme)
	}
	res, err := c.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, c.maxBytes+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(body)) > c.maxBytes {
		return nil, nil, fmt.Errorf("the response is larger than the limit of %d bytes", c.maxBytes)
	}
	return res, body, nil
}

// sendResult is $http.send's result, as jsvm's.
type sendResult struct {
	JSON       any                     `json:"json"`
	Headers    map[string][]string     `json:"headers"`
	Cookies    map[string]*http.Cookie `json:"cookies"`
	Raw        string                  `json:"raw"`
	Body       []byte                  `json:"body"`
	StatusCode int                     `json:"statusCode"`
}

// send is $http.send({url, method, body, headers, timeout}) with jsvm's
// parameters and result, through the safe client. The timeout (seconds)
// may only shorten the node's.
func (c *safeClient) send(params map[string]any) (*sendResult, error) {
	method := "GET"
	if v, ok := params["method"]; ok {
		method = strings.ToUpper(cast.ToString(v))
	}
	timeout := c.timeout
	if v, ok := params["timeout"]; ok {
		if s := time.Duration(cast.ToInt(v)) * time.Second; s > 0 && s < timeout {
			timeout = s
		}
	}
	var body io.Reader
	var contentType string
	if v, ok := params["data"]; ok && v != nil {
		b, err := json.Marshal(cast.ToStringMap(v))
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	} else if v, ok := params["body"]; ok && v != nil {
		switch b := v.(type) {
		case io.Reader:
			body = b
		case jsvm.FormData:
			buf, mp, err := formData(b)
			if err != nil {
				return nil, err
			}
			body, contentType = buf, mp
		default:
			body = strings.NewReader(cast.ToString(b))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, cast.ToString(params["url"]), body)
	if err != nil {
		return nil, err
	}
	for k, v := range cast.ToStringMapString(params["headers"]) {
		req.Header.Add(k, v)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, raw, err := c.do(req)
	if err != nil {
		return nil, err
	}
	out := &sendResult{StatusCode: res.StatusCode, Headers: map[string][]string{}, Cookies: map[string]*http.Cookie{}, Raw: string(raw), Body: raw}
	for k, v := range res.Header {
		out.Headers[k] = v
	}
	for _, ck := range res.Cookies() {
		out.Cookies[ck.Name] = ck
	}
	if len(raw) > 0 {
		var m map[string]any
		if json.Unmarshal(raw, &m) == nil {
			out.JSON = m
		} else {
			var a []any
			if json.Unmarshal(raw, &a) == nil {
				out.JSON = a
			}
		}
	}
	return out, nil
}

// fileFromURL is $filesystem.fileFromURL through the safe client.
func (c *safeClient) fileFromURL(url string, secTimeout int) (*filesystem.File, error) {
	timeout := c.timeout
	if s := time.Duration(secTimeout) * time.Second; s > 0 && s < timeout {
		timeout = s
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, raw, err := c.do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode < 200 || res.StatusCode > 399 {
		return nil, fmt.Errorf("failed to download url %s (%d)", url, res.StatusCode)
	}
	name := req.URL.Path
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if name == "" {
		name = "file"
	}
	return filesystem.NewFileFromBytes(raw, name)
}

// formData encodes a FormData body as multipart/form-data: files as file
// parts, everything else as text fields.
func formData(data jsvm.FormData) (*bytes.Buffer, string, error) {
	buf := new(bytes.Buffer)
	w := multipart.NewWriter(buf)
	for _, key := range data.Keys() {
		for _, v := range data.GetAll(key) {
			f, ok := v.(*filesystem.File)
			if !ok {
				if err := w.WriteField(key, cast.ToString(v)); err != nil {
					return nil, "", err
				}
				continue
			}
			part, err := w.CreateFormFile(key, f.OriginalName)
			if err != nil {
				return nil, "", err
			}
			r, err := f.Reader.Open()
			if err != nil {
				return nil, "", err
			}
			_, err = io.Copy(part, r)
			r.Close()
			if err != nil {
				return nil, "", err
			}
		}
	}
	if err := w.Close(); err != nil {
		return nil, "", err
	}
	return buf, w.FormDataContentType(), nil
}
