package filestorage

import (
	"encoding/json"

	filestoragev1 "github.com/filestorage/filestorage/clients/go/gen/filestorage/v1"
)

// The calls that change nothing, so trying one again cannot do harm.
var retryableMethods = []string{"Retrieve", "RetrieveStream", "Stat", "Exists", "ListKeys", "GetStats", "GetUsage", "QueryUpload"}

// retryServiceConfig is gRPC's own retry policy (exponential backoff with
// jitter, on UNAVAILABLE) for the calls above, as a service config.
func retryServiceConfig(retries int) string {
	if retries == 0 {
		return `{}`
	}
	type name struct {
		Service string `json:"service"`
		Method  string `json:"method"`
	}
	names := make([]name, len(retryableMethods))
	for i, m := range retryableMethods {
		names[i] = name{Service: filestoragev1.FileStorageService_ServiceDesc.ServiceName, Method: m}
	}
	config := map[string]any{
		"methodConfig": []any{map[string]any{
			"name": names,
			"retryPolicy": map[string]any{
				"maxAttempts":          retries + 1,
				"initialBackoff":       "0.1s",
				"maxBackoff":           "2s",
				"backoffMultiplier":    2,
				"retryableStatusCodes": []string{"UNAVAILABLE"},
			},
		}},
	}
	out, err := json.Marshal(config)
	if err != nil {
		panic(err) // a literal of strings and numbers always encodes
	}
	return string(out)
}
