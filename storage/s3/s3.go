// Package s3 is the S3 backend of the object store:
// s3://bucket/prefix?endpoint=http://host:9000&region=us-east-1. Any
// S3-compatible service works. Credentials come from the URL's user info,
// or else from the standard AWS sources (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, shared config files, instance roles).
//
// AWS_CA_BUNDLE is removed from the process environment when an S3 store
// opens: the S3 client Litestream uses cannot apply it and fails to start
// when it is set. To trust a private CA, add it to the system trust store
// (or point SSL_CERT_FILE at a bundle that includes it).
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/benbjohnson/litestream"
	lss3 "github.com/benbjohnson/litestream/s3"

	"github.com/pbe/pbe/storage"
)

func init() {
	storage.Register("s3", func(ctx context.Context, u *url.URL) (storage.ObjectStore, error) {
		cfg, err := ParseURL(u)
		if err != nil {
			return nil, err
		}
		return New(ctx, cfg)
	})
}

// Config locates a bucket and a key prefix in it.
type Config struct {
	Bucket string
	// Prefix is prepended to every key ("" or "a/b", no slashes around).
	Prefix         string
	Endpoint       string
	Region         string
	ForcePathStyle bool
	// AccessKeyID and SecretAccessKey, when empty, come from the AWS
	// credential chain.
	AccessKeyID     string
	SecretAccessKey string
}

// DefaultRegion is used with a custom endpoint when none is given.
const DefaultRegion = "us-east-1"

// ParseURL reads s3://[key:secret@]bucket/prefix?endpoint=...&region=...&force_path_style=true.
func ParseURL(u *url.URL) (Config, error) {
	q := u.Query()
	cfg := Config{
		Bucket:   u.Host,
		Prefix:   strings.Trim(u.Path, "/"),
		Endpoint: q.Get("endpoint"),
		Region:   q.Get("region"),
	}
	if cfg.Bucket == "" {
		return cfg, fmt.Errorf("s3 object store url %q: the bucket is missing (s3://bucket/prefix)", u.Redacted())
	}
	if u.User != nil {
		cfg.AccessKeyID = u.User.Username()
		cfg.SecretAccessKey, _ = u.User.Password()
	}
	if cfg.Endpoint != "" {
		cfg.ForcePathStyle = true // what S3-compatible servers expect
		if cfg.Region == "" {
			cfg.Region = DefaultRegion
		}
	}
	if v := q.Get("force_path_style"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return cfg, fmt.Errorf("s3 object store url: force_path_style=%q is not a boolean", v)
		}
		cfg.ForcePathStyle = b
	}
	return cfg, nil
}

// Store is an S3 bucket prefix used as the object store. Safe for
// concurrent use.
type Store struct {
	cfg    Config
	client *awss3.Client
	// classRefused is set once the server refused a storage class.
	classRefused atomic.Bool
}

var _ storage.ClassStore = (*Store)(nil)

// New returns a store for cfg. It does not contact S3; Ping does.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if v, ok := os.LookupEnv("AWS_CA_BUNDLE"); ok {
		slog.Warn("ignoring AWS_CA_BUNDLE: the S3 replica client cannot use it; trust the CA through the system store or SSL_CERT_FILE", "AWS_CA_BUNDLE", v)
		os.Unsetenv("AWS_CA_BUNDLE")
	}
	opts := []func(*config.LoadOptions) error{}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	opts = append(opts, config.WithHTTPClient(&http.Client{Timeout: 5 * time.Minute}))
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 object store: load AWS config: %w", err)
	}
	client := awss3.NewFromConfig(awsCfg, func(o *awss3.Options) {
		o.UsePathStyle = cfg.ForcePathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
			// S3-compatible services differ in checksum support.
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	return &Store{cfg: cfg, client: client}, nil
}

func (s *Store) String() string {
	u := url.URL{Scheme: "s3", Host: s.cfg.Bucket, Path: "/" + s.cfg.Prefix}
	if s.cfg.Endpoint != "" {
		u.RawQuery = url.Values{"endpoint": {s.cfg.Endpoint}, "region": {s.cfg.Region}}.Encode()
	}
	return u.String()
}

// key maps an object key to the bucket key, refusing keys that are not
// plain relative paths.
func (s *Store) key(k string) (string, error) {
	if k == "" || strings.HasPrefix(k, "/") || strings.ContainsRune(k, 0) || strings.Contains(k, "\\") {
		return "", fmt.Errorf("invalid object key %q", k)
	}
	for _, part := range strings.Split(strings.TrimSuffix(k, "/"), "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("invalid object key %q", k)
		}
	}
	if s.cfg.Prefix == "" {
		return k, nil
	}
	return s.cfg.Prefix + "/" + k, nil
}

// Put uploads data; S3 makes it durable before answering.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	return s.put(ctx, key, data, "")
}

// PutFile uploads the file at path, reading it as it goes: in one request
// up to uploadPartSize, in parts of that size above it (so past S3's 5 GiB
// limit on one request).
func (s *Store) PutFile(ctx context.Context, key, path string) error {
	return s.PutFileClass(ctx, key, path, "")
}

// uploadPartSize is the part size of multipart uploads; a few parts at a
// time are held in memory.
const uploadPartSize = 16 << 20

// PutFileClass is PutFile in storage class class, as PutClass.
func (s *Store) PutFileClass(ctx context.Context, key, path, class string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return s.withClass(class, func(c types.StorageClass) error {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		return s.upload(ctx, key, f, c)
	})
}

// upload sends body with S3's upload manager.
func (s *Store) upload(ctx context.Context, key string, body io.ReadSeeker, class types.StorageClass) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	up := manager.NewUploader(s.client, func(u *manager.Uploader) { u.PartSize = uploadPartSize })
	_, err = up.Upload(ctx, &awss3.PutObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(k), Body: body, StorageClass: class})
	if err != nil {
		return fmt.Errorf("s3 upload %s: %w", key, err)
	}
	return nil
}

// PutClass uploads data in storage class class (storage.ClassStore). A
// server that refuses the class (InvalidStorageClass, or NotImplemented
// for the header) gets the object in its default class; the refusal is
// logged once and the class is not tried again by this store.
func (s *Store) PutClass(ctx context.Context, key string, data []byte, class string) error {
	return s.withClass(class, func(c types.StorageClass) error { return s.put(ctx, key, data, c) })
}

// withClass runs put in storage class class and, if the server refuses
// the class, again in its default class; the first refusal is logged, and
// the store stops asking for the class.
func (s *Store) withClass(class string, put func(types.StorageClass) error) error {
	if class == "" || s.classRefused.Load() {
		return put("")
	}
	err := put(types.StorageClass(class))
	var api smithy.APIError
	if err == nil || !errors.As(err, &api) || !classRefusal(api.ErrorCode()) {
		return err
	}
	if !s.classRefused.Swap(true) {
		slog.Warn("the object store refuses the storage class: writing in its default class", "store", s.String(), "storage_class", class, "code", api.ErrorCode())
	}
	return put("")
}

// classRefusal reports whether an S3 error code says the storage class,
// not the request, is what the server refuses.
func classRefusal(code string) bool {
	switch code {
	case "InvalidStorageClass", "NotImplemented":
		return true
	}
	return false
}

func (s *Store) put(ctx context.Context, key string, data []byte, class types.StorageClass) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	_, err = s.client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket: aws.String(s.cfg.Bucket), Key: aws.String(k), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
		StorageClass: class,
	})
	if err != nil {
		return fmt.Errorf("s3 put %s: %w", key, err)
	}
	return nil
}

// Open starts downloading the object at key.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(k)})
	if isNotFound(err) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("s3 get %s: %w", key, err)
	}
	return out.Body, nil
}

// Get downloads the object at key.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	body, err := s.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(body)
}

// Delete removes the object at key.
func (s *Store) Delete(ctx context.Context, key string) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(k)}); err != nil && !isNotFound(err) {
		return fmt.Errorf("s3 delete %s: %w", key, err)
	}
	return nil
}

// List returns the keys under prefix, sorted (S3 lists in key order).
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	p, err := s.key(prefix)
	if err != nil {
		return nil, err
	}
	var keys []string
	err = s.eachKey(ctx, p, func(k string) error {
		keys = append(keys, strings.TrimPrefix(k, s.rootPrefix()))
		return nil
	})
	return keys, err
}

func (s *Store) rootPrefix() string {
	if s.cfg.Prefix == "" {
		return ""
	}
	return s.cfg.Prefix + "/"
}

// eachKey calls fn for every bucket key under p.
func (s *Store) eachKey(ctx context.Context, p string, fn func(string) error) error {
	pages := awss3.NewListObjectsV2Paginator(s.client, &awss3.ListObjectsV2Input{Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(p)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3 list %s: %w", p, err)
		}
		for _, o := range page.Contents {
			if err := fn(aws.ToString(o.Key)); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteBatch is the most keys S3 deletes in one request.
const deleteBatch = 1000

// DeletePrefix removes every object under prefix.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	p, err := s.key(prefix)
	if err != nil {
		return err
	}
	var batch []types.ObjectIdentifier
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		out, err := s.client.DeleteObjects(ctx, &awss3.DeleteObjectsInput{Bucket: aws.String(s.cfg.Bucket), Delete: &types.Delete{Objects: batch, Quiet: aws.Bool(true)}})
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("s3 delete under %s: %w", prefix, err)
		}
		if len(out.Errors) > 0 {
			return fmt.Errorf("s3 delete under %s: %s: %s", prefix, aws.ToString(out.Errors[0].Key), aws.ToString(out.Errors[0].Message))
		}
		return nil
	}
	err = s.eachKey(ctx, p, func(k string) error {
		batch = append(batch, types.ObjectIdentifier{Key: aws.String(k)})
		if len(batch) == deleteBatch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// ReplicaClient returns Litestream's S3 replica client for the prefix.
func (s *Store) ReplicaClient(prefix string) (litestream.ReplicaClient, error) {
	p, err := s.key(prefix)
	if err != nil {
		return nil, err
	}
	c := lss3.NewReplicaClient()
	c.Bucket = s.cfg.Bucket
	c.Path = path.Clean(p)
	c.Endpoint = s.cfg.Endpoint
	c.Region = s.cfg.Region
	c.ForcePathStyle = s.cfg.ForcePathStyle
	c.AccessKeyID = s.cfg.AccessKeyID
	c.SecretAccessKey = s.cfg.SecretAccessKey
	return c, nil
}

// Ping checks that the bucket is reachable with the credentials.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: aws.String(s.cfg.Bucket)})
	if err != nil {
		return fmt.Errorf("s3 object store %s: %w", s.cfg.Bucket, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return true
	}
	var api smithy.APIError
	return errors.As(err, &api) && (api.ErrorCode() == "NotFound" || api.ErrorCode() == "NoSuchKey")
}
