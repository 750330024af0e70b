package filestorage_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/filestorage/filestorage/clients/go/internal/scenario"
)

// TestScenario runs the shared client scenario (every client runs the same)
// under $SCENARIO_PREFIX, or a prefix of its own.
func TestScenario(t *testing.T) {
	p := os.Getenv("SCENARIO_PREFIX")
	if p == "" {
		p = fmt.Sprintf("go/%d/", os.Getpid())
	}
	var progress strings.Builder
	if err := scenario.Run(testContext(t), dial(t), p, &progress); err != nil {
		t.Fatalf("%s%v", progress.String(), err)
	}
	t.Log(progress.String())
}
