package filestorage

import (
	"context"
	"iter"

	filestoragev1 "github.com/filestorage/filestorage/clients/go/gen/filestorage/v1"
)

// ListOptions select one page of keys.
type ListOptions struct {
	// Prefix the keys start with; empty for all.
	Prefix string
	// Limit is the page size: 0 for the daemon's default (1000), at most 10000.
	Limit int32
	// PageToken continues from a previous Page's NextPageToken.
	PageToken string
	// Delimiter (usually "/") rolls keys that contain it after the prefix up
	// into Page.Prefixes.
	Delimiter string
	// IncludeInfo fills Page.Objects with one Info per key.
	IncludeInfo bool
}

// Page is one page of a listing, keys in byte order.
type Page struct {
	Keys     []string
	Prefixes []string
	Objects  []*Info
	// NextPageToken is empty on the last page.
	NextPageToken string
}

// ListKeys returns one page of keys.
func (c *Client) ListKeys(ctx context.Context, opts ListOptions) (*Page, error) {
	res, err := c.rpc.ListKeys(ctx, &filestoragev1.ListKeysRequest{
		Prefix:      opts.Prefix,
		Limit:       opts.Limit,
		PageToken:   opts.PageToken,
		Delimiter:   opts.Delimiter,
		IncludeInfo: opts.IncludeInfo,
	})
	if err != nil {
		return nil, rpcError(err)
	}
	page := &Page{Keys: res.GetKeys(), Prefixes: res.GetPrefixes(), NextPageToken: res.GetNextPageToken()}
	for _, o := range res.GetObjects() {
		page.Objects = append(page.Objects, infoFrom(o))
	}
	return page, nil
}

// Pages iterates over every page of a listing from opts.PageToken on, one
// ListKeys call per page, fetched as the loop asks. A failed call is yielded
// once, with a nil page, and ends the iteration.
func (c *Client) Pages(ctx context.Context, opts ListOptions) iter.Seq2[*Page, error] {
	return func(yield func(*Page, error) bool) {
		for {
			page, err := c.ListKeys(ctx, opts)
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(page, nil) || page.NextPageToken == "" {
				return
			}
			opts.PageToken = page.NextPageToken
		}
	}
}

// Keys iterates over every key under prefix in byte order, across pages:
//
//	for key, err := range c.Keys(ctx, "reports/") {
//		if err != nil { return err }
//		...
//	}
//
// A failed call is yielded once, with an empty key, and ends the iteration.
func (c *Client) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for page, err := range c.Pages(ctx, ListOptions{Prefix: prefix}) {
			if err != nil {
				yield("", err)
				return
			}
			for _, key := range page.Keys {
				if !yield(key, nil) {
					return
				}
			}
		}
	}
}
