package main

import (
	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "webmon",
		Short: "A Kubernetes-native website monitor",
		Long: `webmon checks the URLs declared in Website objects at their interval and
summarises the results into each Website's status.

Its components are subcommands of this one binary.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return setFlagsFromEnv(cmd.Flags())
		},
	}
	root.AddCommand(
		newOperatorCommand(),
		newSchedulerCommand(),
		newCheckerCommand(),
		newMigrateCommand(),
		newHistoryCommand(),
		newDevBrokerCommand(),
		newVersionCommand(),
	)
	return root
}
