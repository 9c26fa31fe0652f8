package controllers

// Defaults of the operator's tuning flags. Assigning a new Website costs two
// writes (its shard label, its status), so these rates bound how fast a
// mass import is absorbed; they apply once per Website and spec change,
// never per check.
const (
	DefaultKubeAPIQPS              = 500
	DefaultKubeAPIBurst            = 1000
	DefaultMaxConcurrentReconciles = 8
)
