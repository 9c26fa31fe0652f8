// Package kafka is webmon's one place that knows how to reach Kafka: it turns
// webmon's configuration (brokers, TLS, SASL) into a sarama configuration,
// manages topics, and embeds a Kafka-protocol broker for development and
// tests. The code that talks to Kafka is the same against both.
package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"github.com/spf13/pflag"
)

// PasswordEnv is the environment variable that carries the SASL password
// when it is not read from a file. There is deliberately no flag for it: a
// flag's value shows in process listings and pod specs.
const PasswordEnv = "WEBMON_KAFKA_SASL_PASSWORD"

// The SASL mechanisms webmon supports.
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

// DefaultVersion is the Kafka protocol version webmon speaks unless told
// otherwise: any broker from 3.6 on understands it.
const DefaultVersion = "3.6.0"

// Config is how a webmon component reaches Kafka.
type Config struct {
	// Brokers are the bootstrap brokers, as host:port.
	Brokers []string
	// ClientID names this client in the brokers' logs and quotas.
	ClientID string
	// Version is the Kafka protocol version to speak, such as "3.6.0".
	Version string
	TLS     TLSConfig
	SASL    SASLConfig
}

// TLSConfig is the TLS side of the connection to the brokers.
type TLSConfig struct {
	// Enabled turns TLS on; it is implied by any of the files below.
	Enabled bool
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates;
	// empty means the system's roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key (PEM) for
	// mutual TLS; both or neither.
	CertFile string
	KeyFile  string
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate. For tests only.
	InsecureSkipVerify bool
}

// SASLConfig is the SASL authentication to the brokers.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty disables SASL.
	Mechanism string
	Username  string
	// PasswordFile holds the password (a mounted Secret key). When empty the
	// password comes from $WEBMON_KAFKA_SASL_PASSWORD.
	PasswordFile string
	// Password is set by tests and by LoadPassword; never by a flag.
	Password string
}

// AddFlags registers the Kafka flags on fs, with c's current values as defaults.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&c.Brokers, "kafka-brokers", c.Brokers, "Kafka bootstrap brokers, host:port, comma-separated")
	fs.StringVar(&c.ClientID, "kafka-client-id", c.ClientID, "Kafka client id")
	fs.StringVar(&c.Version, "kafka-version", c.Version, "Kafka protocol version to speak")
	fs.BoolVar(&c.TLS.Enabled, "kafka-tls", c.TLS.Enabled, "connect to the brokers over TLS")
	fs.StringVar(&c.TLS.CAFile, "kafka-tls-ca-file", c.TLS.CAFile, "PEM file of the CAs that sign the brokers' certificates (default: system roots)")
	fs.StringVar(&c.TLS.CertFile, "kafka-tls-cert-file", c.TLS.CertFile, "PEM client certificate for mutual TLS")
	fs.StringVar(&c.TLS.KeyFile, "kafka-tls-key-file", c.TLS.KeyFile, "PEM client key for mutual TLS")
	fs.StringVar(&c.TLS.ServerName, "kafka-tls-server-name", c.TLS.ServerName, "name to verify in the brokers' certificates")
	fs.BoolVar(&c.TLS.InsecureSkipVerify, "kafka-tls-insecure-skip-verify", c.TLS.InsecureSkipVerify, "accept any broker certificate (tests only)")
	fs.StringVar(&c.SASL.Mechanism, "kafka-sasl-mechanism", c.SASL.Mechanism, "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default: no SASL)")
	fs.StringVar(&c.SASL.Username, "kafka-sasl-username", c.SASL.Username, "SASL user name")
	fs.StringVar(&c.SASL.PasswordFile, "kafka-sasl-password-file", c.SASL.PasswordFile, "file holding the SASL password (default: $"+PasswordEnv+")")
}

// Sarama validates c and builds the sarama configuration it describes. Every
// problem is reported, each naming the setting at fault.
func (c *Config) Sarama() (*sarama.Config, error) {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka brokers: none given (--kafka-brokers host:port,...)"))
	}
	for _, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("kafka broker %q: want host:port", b))
		}
	}
	sc := sarama.NewConfig()
	if c.ClientID != "" {
		sc.ClientID = c.ClientID
	}
	version := c.Version
	if version == "" {
		version = DefaultVersion
	}
	v, err := sarama.ParseKafkaVersion(version)
	if err != nil {
		errs = append(errs, fmt.Errorf("kafka version %q: %w", version, err))
	}
	sc.Version = v
	// Topics are created on purpose, with their partitions and retention,
	// never as a side effect of a typo.
	sc.Metadata.AllowAutoTopicCreation = false

	if tlsCfg, err := c.TLS.build(); err != nil {
		errs = append(errs, err)
	} else if tlsCfg != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = tlsCfg
	}
	if err := c.SASL.apply(sc); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return sc, nil
}

func (t TLSConfig) build() (*tls.Config, error) {
	if !t.Enabled && t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, documented as tests only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka TLS CA file %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case t.CertFile != "" || t.KeyFile != "":
		return nil, errors.New("kafka TLS client certificate: give both --kafka-tls-cert-file and --kafka-tls-key-file, or neither")
	}
	return cfg, nil
}

func (s SASLConfig) apply(sc *sarama.Config) error {
	if s.Mechanism == "" {
		return nil
	}
	mechanism := sarama.SASLMechanism(strings.ToUpper(s.Mechanism))
	switch mechanism {
	case sarama.SASLTypePlaintext:
	case sarama.SASLTypeSCRAMSHA256:
		sc.Net.SASL.SCRAMClientGeneratorFunc = newSCRAMClient(sha256Hash)
	case sarama.SASLTypeSCRAMSHA512:
		sc.Net.SASL.SCRAMClientGeneratorFunc = newSCRAMClient(sha512Hash)
	default:
		return fmt.Errorf("kafka SASL mechanism %q: want %s, %s or %s", s.Mechanism, SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512)
	}
	if s.Username == "" {
		return fmt.Errorf("kafka SASL %s: no user name (--kafka-sasl-username)", mechanism)
	}
	password, err := s.password()
	if err != nil {
		return err
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Mechanism = mechanism
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.User = s.Username
	sc.Net.SASL.Password = password
	return nil
}

func (s SASLConfig) password() (string, error) {
	switch {
	case s.Password != "":
		return s.Password, nil
	case s.PasswordFile != "":
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("kafka SASL password file: %w", err)
		}
		if p := strings.TrimRight(string(b), "\r\n"); p != "" {
			return p, nil
		}
		return "", fmt.Errorf("kafka SASL password file %s is empty", s.PasswordFile)
	case os.Getenv(PasswordEnv) != "":
		return os.Getenv(PasswordEnv), nil
	}
	return "", fmt.Errorf("kafka SASL: no password (--kafka-sasl-password-file or $%s)", PasswordEnv)
}
