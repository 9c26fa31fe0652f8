package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// envPrefix lets every flag be set from the environment, as pods are
// usually configured: --kafka-brokers from WEBMON_KAFKA_BROKERS.
const envPrefix = "WEBMON_"

// envName is the environment variable of a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// setFlagsFromEnv sets each flag not given on the command line from its
// environment variable, if set; the command line wins.
func setFlagsFromEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("$%s: %w", envName(f.Name), err))
			}
		}
	})
	return errors.Join(errs...)
}
