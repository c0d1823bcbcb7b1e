//go:build cgo

package berth

import (
	"errors"
	"strconv"
)

// Status values of berth.h (berth_status). They are stable forever.
const (
	statusOK              int32 = 0
	statusEmpty           int32 = 1
	statusInvalidArgument int32 = 2
	statusInvalidName     int32 = 3
	statusNotFound        int32 = 4
	statusBadBuffer       int32 = 5
	statusNoMemory        int32 = 6
	statusInternal        int32 = 7
	statusNotSynced       int32 = 8  // since ABI 0.2
	statusBadSelector     int32 = 9  // since ABI 0.2
	statusTimeout         int32 = 10 // since ABI 0.3
	statusBadRegion       int32 = 11 // since ABI 0.3
	statusBadHandle       int32 = 12 // since ABI 0.4
	statusForked          int32 = 13 // since ABI 0.5
)

var statusNames = [...]string{
	statusOK:              "BERTH_OK",
	statusEmpty:           "BERTH_EMPTY",
	statusInvalidArgument: "BERTH_ERR_INVALID_ARGUMENT",
	statusInvalidName:     "BERTH_ERR_INVALID_NAME",
	statusNotFound:        "BERTH_ERR_NOT_FOUND",
	statusBadBuffer:       "BERTH_ERR_BAD_BUFFER",
	statusNoMemory:        "BERTH_ERR_NO_MEMORY",
	statusInternal:        "BERTH_ERR_INTERNAL",
	statusNotSynced:       "BERTH_ERR_NOT_SYNCED",
	statusBadSelector:     "BERTH_ERR_BAD_SELECTOR",
	statusTimeout:         "BERTH_ERR_TIMEOUT",
	statusBadRegion:       "BERTH_ERR_BAD_REGION",
	statusBadHandle:       "BERTH_ERR_BAD_HANDLE",
	statusForked:          "BERTH_ERR_FORKED",
}

// StatusName returns the name of a berth_status value ("BERTH_ERR_NOT_FOUND",
// ...), as berth_status_name does.
func StatusName(status int32) string {
	if status >= 0 && int(status) < len(statusNames) {
		return statusNames[status]
	}
	return "BERTH_UNKNOWN_STATUS(" + strconv.FormatInt(int64(status), 10) + ")"
}

// Error is a failure reported by libberth: the berth_status it returned and
// the message berth_last_error gave for it on the same thread.
//
// Test the kind of failure with errors.Is against the sentinels below, for
// example errors.Is(err, berth.ErrNotFound); use errors.As to read Message.
type Error struct {
	Status  int32
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "berth: " + StatusName(e.Status)
	}
	return "berth: " + StatusName(e.Status) + ": " + e.Message
}

// Is reports whether target is the sentinel for e's status: an *Error with
// the same Status and no Message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Status == e.Status
}

// Sentinels for errors.Is, one per failing berth_status, plus ErrClosed.
var (
	// ErrInvalidArgument: a required value is missing or out of range.
	ErrInvalidArgument error = &Error{Status: statusInvalidArgument}
	// ErrInvalidName: a name is empty where it must not be, longer than its
	// limit, contains a NUL byte, or is not valid UTF-8.
	ErrInvalidName error = &Error{Status: statusInvalidName}
	// ErrNotFound: the named pool or shared limiter does not exist.
	ErrNotFound error = &Error{Status: statusNotFound}
	// ErrBadBuffer: a FlatBuffers buffer failed verification.
	ErrBadBuffer error = &Error{Status: statusBadBuffer}
	// ErrNoMemory: an allocation failed.
	ErrNoMemory error = &Error{Status: statusNoMemory}
	// ErrInternal: an internal invariant of the library failed.
	ErrInternal error = &Error{Status: statusInternal}
	// ErrNotSynced: the Cache has not completed its first Replace, so it
	// cannot answer List or Get; go to the API server instead.
	ErrNotSynced error = &Error{Status: statusNotSynced}
	// ErrBadSelector: a label selector Kubernetes would reject. The message
	// names the byte offset ("at byte 4: ...") and what was expected.
	ErrBadSelector error = &Error{Status: statusBadSelector}
	// ErrTimeout: a blocking wait of the library reached its deadline;
	// nothing is held. (Limiter.Acquire, SharedLimiter.Acquire and
	// Bucket.Wait never block in the library: they return the context's
	// error instead.)
	ErrTimeout error = &Error{Status: statusTimeout}
	// ErrBadRegion: a shared-memory region exists under the name but is not
	// a Berth shared limiter of this layout; nothing was changed in it.
	ErrBadRegion error = &Error{Status: statusBadRegion}
	// ErrBadHandle: the library was given a handle that is not live (freed,
	// of another type, or never made by Berth). This package refuses calls
	// on closed objects before they reach the library, with an error that
	// matches both ErrClosed and ErrBadHandle.
	ErrBadHandle error = &Error{Status: statusBadHandle}
	// ErrForked: the handle was made by the process this one was forked
	// from and its state stays there (berth.h, "fork"). A Go program does
	// not fork (os/exec runs new programs), so this reaches Go only through
	// a handle value passed in from elsewhere.
	ErrForked error = &Error{Status: statusForked}

	// ErrClosed: the Engine, Cache, Selector, Limiter, SharedLimiter or
	// Bucket was closed. Errors wrapping it also match ErrBadHandle, what
	// the library answers for a freed handle.
	ErrClosed = errors.New("berth: use after Close")
	// ErrABIMismatch: the loaded libberth has another ABI major version than
	// the berth.h this package was compiled against.
	ErrABIMismatch = errors.New("berth: libberth ABI major version mismatch")
)

// closedError is what every method returns after Close: op is the method,
// what the kind of handle ("engine", "cache", "selector", "limiter",
// "shared limiter", "bucket").
type closedError struct{ op, what string }

func errClosed(op, what string) error { return &closedError{op: op, what: what} }

func (e *closedError) Error() string { return "berth: " + e.op + ": " + e.what + " is closed" }
func (e *closedError) Unwrap() error { return ErrClosed }

// Is makes a closed object's error match ErrBadHandle too.
func (e *closedError) Is(target error) bool { return target == ErrBadHandle }
