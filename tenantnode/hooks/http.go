package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/pocketbase/pocketbase/plugins/jsvm"
	"github.com/pocketbase/pocketbase/tools/filesystem"
	"github.com/spf13/cast"
)

// safeClient is the HTTP client of tenant code. It connects only to
// public addresses: the check runs on the address actually dialled (after
// DNS, for every redirect), so a name that resolves to 127.0.0.1 or a
// rebinding DNS server gains nothing. It ignores proxy settings, and
// bounds time and response size.
type safeClient struct {
	client   *http.Client
	timeout  time.Duration
	maxBytes int64
}

// blockedRanges are not public: loopback, private, link-local (cloud
// metadata at 169.254.169.254), CGNAT, multicast, reserved and the like.
var blockedRanges = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
		"203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
		"2002::/16", "fc00::/7", "fe80::/10", "ff00::/8",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// errNotPublic refuses a connection to an address that is not public.
var errNotPublic = errors.New("hooks may only connect to public internet addresses")

func newSafeClient(cfg Config) *safeClient {
	deny := append(append([]netip.Prefix{}, blockedRanges...), cfg.HTTPDeny...)
	allow := cfg.HTTPAllow
	dialer := &net.Dialer{
		Timeout: cfg.HTTPTimeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", errNotPublic, address)
			}
			ip := ap.Addr().Unmap()
			for _, p := range allow {
				if p.Contains(ip) {
					return nil
				}
			}
			for _, p := range deny {
				if p.Contains(ip) {
					return fmt.Errorf("%w: %s is not one", errNotPublic, ip)
				}
			}
			return nil
		},
	}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   cfg.HTTPTimeout,
		ResponseHeaderTimeout: cfg.HTTPTimeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
	}
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
