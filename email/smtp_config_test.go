package email

import (
	"strings"
	"testing"
)

func TestParseSMTPURL(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		want    SMTPConfig
		wantErr string
	}{
		{raw: "smtp://mail.example.com", want: SMTPConfig{Host: "mail.example.com", Port: "587", TLS: TLSStartTLS}},
		{raw: "smtp://mail.example.com/", want: SMTPConfig{Host: "mail.example.com", Port: "587", TLS: TLSStartTLS}},
		{raw: "smtps://mail.example.com", want: SMTPConfig{Host: "mail.example.com", Port: "465", TLS: TLSImplicit}},
		{raw: "smtp://mail.example.com:2587", want: SMTPConfig{Host: "mail.example.com", Port: "2587", TLS: TLSStartTLS}},
		{raw: "smtp://apikey:p%40ss%3Aw%2Frd%25@mail.example.com", want: SMTPConfig{Host: "mail.example.com", Port: "587", TLS: TLSStartTLS, Username: "apikey", Password: "p@ss:w/rd%"}},
		{raw: "smtps://user%40example.com:pw@mail.example.com:2465", want: SMTPConfig{Host: "mail.example.com", Port: "2465", TLS: TLSImplicit, Username: "user@example.com", Password: "pw"}},
		{raw: "smtp://mail.example.com:25?tls=opportunistic", want: SMTPConfig{Host: "mail.example.com", Port: "25", TLS: TLSOpportunistic}},
		{raw: "smtp://127.0.0.1:2525?tls=none", want: SMTPConfig{Host: "127.0.0.1", Port: "2525", TLS: TLSNone}},
		{raw: "smtp://[::1]:2525?tls=none", want: SMTPConfig{Host: "::1", Port: "2525", TLS: TLSNone}},
		{raw: "smtp://localhost:25?tls=none", want: SMTPConfig{Host: "localhost", Port: "25", TLS: TLSNone}},
		{raw: "smtps://127.0.0.1?insecure_skip_verify=true", want: SMTPConfig{Host: "127.0.0.1", Port: "465", TLS: TLSImplicit, InsecureSkipVerify: true}},
		{raw: "smtps://mail.example.com?tls=tls", want: SMTPConfig{Host: "mail.example.com", Port: "465", TLS: TLSImplicit}},

		{raw: "http://mail.example.com", wantErr: "scheme"},
		{raw: "mail.example.com:587", wantErr: "scheme"},
		{raw: "smtp://", wantErr: "no host"},
		{raw: "smtp://:587", wantErr: "no host"},
		{raw: "smtp://mail.example.com:99999", wantErr: "port"},
		{raw: "smtp://mail.example.com/inbox", wantErr: "path"},
		{raw: "smtp://mail.example.com?tls=none", wantErr: "loopback"},
		{raw: "smtp://10.0.0.5?tls=none", wantErr: "loopback"},
		{raw: "smtp://mail.example.com?tls=maybe", wantErr: "tls must be"},
		{raw: "smtps://mail.example.com?tls=none", wantErr: "always TLS"},
		{raw: "smtp://mail.example.com?starttls=required", wantErr: `unknown parameter "starttls"`},
		{raw: "smtp://mail.example.com?insecure_skip_verify=yes please", wantErr: "insecure_skip_verify"},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := ParseSMTPURL(tc.raw)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if got.Timeout != DefaultTimeout {
				t.Errorf("Timeout: got %s, want %s", got.Timeout, DefaultTimeout)
			}
			got.Timeout = 0
			if got != tc.want {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

// TestParseSMTPURL_PasswordNeverShown: the URL comes from a flag or the
// environment, and its errors end up in logs and on the terminal.
func TestParseSMTPURL_PasswordNeverShown(t *testing.T) {
	for _, raw := range []string{
		"smtp://u:s3cret-pw@mail.example.com:notaport",
		"smtp://u:s3cret-pw@mail.example.com:99999",
		"smtp://u:s3cret-pw@mail.example.com?tls=maybe",
		"smtp://u:s3cret-pw@mail.example.com?tls=none",
		"smtp://u:s3cret-pw@mail.example.com?colour=red",
		"smtp://u:s3cret-pw@mail.example.com/path",
		"imap://u:s3cret-pw@mail.example.com",
		"smtp://u:s3cret-pw@mail.example.com/%zz",
	} {
		t.Run(raw, func(t *testing.T) {
			_, err := ParseSMTPURL(raw)
			if err == nil {
				t.Fatal("got no error, want one")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

func TestSMTPConfig_String(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"smtp://u:s3cret@mail.example.com", "smtp://u@mail.example.com:587"},
		{"smtps://u:s3cret@mail.example.com", "smtps://u@mail.example.com:465"},
		{"smtp://127.0.0.1:25?tls=none", "smtp://127.0.0.1:25?tls=none"},
		{"smtps://127.0.0.1?insecure_skip_verify=true", "smtps://127.0.0.1:465?insecure_skip_verify=true"},
	} {
		cfg, err := ParseSMTPURL(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.String(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.raw, got, tc.want)
		}
		// The String form is a URL that parses back to the same config,
		// less the password.
		back, err := ParseSMTPURL(cfg.String())
		cfg.Password = ""
		if err != nil || back != cfg {
			t.Errorf("%s: String() parses back to %v %v, want %v", tc.raw, back, err, cfg)
		}
	}
}
