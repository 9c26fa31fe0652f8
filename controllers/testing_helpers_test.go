package controllers

import (
	"os"

	"go.uber.org/zap/zapcore"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/config"
)

// zapLevelFromEnv keeps the operator quiet in tests unless WEBMON_TEST_LOG=debug.
func zapLevelFromEnv() zapcore.Level {
	if os.Getenv("WEBMON_TEST_LOG") == "debug" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// ctrlConfigForTests lets several managers in one process register
// controllers of the same name.
func ctrlConfigForTests() config.Controller {
	return config.Controller{SkipNameValidation: ptr.To(true)}
}
