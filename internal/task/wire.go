package task

import (
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the task message (version 1). Durations are whole
// milliseconds; instants are Unix nanoseconds.
const (
	fieldNamespace        = 1
	fieldName             = 2
	fieldUID              = 3
	fieldGeneration       = 4
	fieldURL              = 5
	fieldURLIndex         = 6
	fieldMethod           = 7
	fieldTimeoutMillis    = 8
	fieldHeader           = 9
	fieldBody             = 10
	fieldExpect           = 11
	fieldPlugin           = 12
	fieldScheduledAt      = 13
	fieldDeadline         = 14
	fieldTrigger          = 15
	fieldCheckNow         = 16
	fieldFailureThreshold = 17
	fieldSuccessThreshold = 18
)

// Fields of the Header message.
const (
	headerName       = 1
	headerValue      = 2
	headerSecretName = 3
	headerSecretKey  = 4
)

// Fields of the Expectations message.
const (
	expectStatusCode       = 1
	expectBodyRegex        = 2
	expectBodyNotRegex     = 3
	expectMaxLatencyMillis = 4
	expectFollowRedirects  = 5
	expectMaxRedirects     = 6
	expectTLSSkipVerify    = 7
)

// Fields of the Plugin message and of its config entries.
const (
	pluginName   = 1
	pluginConfig = 2
	entryKey     = 1
	entryValue   = 2
)

// Prefix is the encoded part of a task that all URLs of a Website share:
// everything but the URL, its index, the times and the trigger. The
// scheduler builds it once per Website generation, so publishing a task
// costs a copy and a few appends.
type Prefix []byte

// NewPrefix encodes t's Website-wide fields.
func NewPrefix(t *Task) Prefix {
	b := []byte{Version}
	b = appendString(b, fieldNamespace, t.Namespace)
	b = appendString(b, fieldName, t.Name)
	b = appendString(b, fieldUID, t.UID)
	b = appendVarint(b, fieldGeneration, uint64(t.Generation))
	b = appendString(b, fieldMethod, t.Method)
	b = appendVarint(b, fieldTimeoutMillis, uint64(t.Timeout.Milliseconds()))
	for _, h := range t.Headers {
		b = appendMessage(b, fieldHeader, func(b []byte) []byte {
			b = appendString(b, headerName, h.Name)
			b = appendString(b, headerValue, h.Value)
			if h.SecretRef != nil {
				b = appendString(b, headerSecretName, h.SecretRef.Name)
				b = appendString(b, headerSecretKey, h.SecretRef.Key)
			}
			return b
		})
	}
	b = appendString(b, fieldBody, t.Body)
	b = appendMessage(b, fieldExpect, t.Expect.append)
	for _, p := range t.Plugins {
		b = appendMessage(b, fieldPlugin, p.append)
	}
	b = appendVarint(b, fieldFailureThreshold, uint64(t.FailureThreshold))
	b = appendVarint(b, fieldSuccessThreshold, uint64(t.SuccessThreshold))
	return b
}

// Append appends to dst a whole task message: the prefix and the per-URL
// fields.
func (p Prefix) Append(dst []byte, url string, index int, scheduledAt, deadline time.Time, trigger Trigger, checkNow string) []byte {
	dst = append(dst, p...)
	dst = appendString(dst, fieldURL, url)
	dst = appendVarint(dst, fieldURLIndex, uint64(index))
	dst = appendFixed64(dst, fieldScheduledAt, uint64(scheduledAt.UnixNano()))
	dst = appendFixed64(dst, fieldDeadline, uint64(deadline.UnixNano()))
	dst = appendVarint(dst, fieldTrigger, uint64(trigger))
	dst = appendString(dst, fieldCheckNow, checkNow)
	return dst
}

// Marshal encodes t.
func (t *Task) Marshal() []byte {
	return NewPrefix(t).Append(nil, t.URL, t.URLIndex, t.ScheduledAt, t.Deadline, t.Trigger, t.CheckNow)
}

func (e *Expectations) append(b []byte) []byte {
	for _, c := range e.StatusCodes {
		b = protowire.AppendTag(b, expectStatusCode, protowire.BytesType)
		b = protowire.AppendString(b, c)
	}
	b = appendString(b, expectBodyRegex, e.BodyRegex)
	b = appendString(b, expectBodyNotRegex, e.BodyNotRegex)
	b = appendVarint(b, expectMaxLatencyMillis, uint64(e.MaxLatency.Milliseconds()))
	if e.FollowRedirects != nil {
		b = protowire.AppendTag(b, expectFollowRedirects, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(*e.FollowRedirects))
	}
	if e.MaxRedirects != nil {
		b = protowire.AppendTag(b, expectMaxRedirects, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(*e.MaxRedirects))
	}
	if e.TLSSkipVerify {
		b = appendVarint(b, expectTLSSkipVerify, 1)
	}
	return b
}

func (p *Plugin) append(b []byte) []byte {
	b = appendString(b, pluginName, p.Name)
	// Sorted, so that equal configurations encode equally.
	keys := make([]string, 0, len(p.Config))
	for k := range p.Config {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendMessage(b, pluginConfig, func(b []byte) []byte {
			b = appendString(b, entryKey, k)
			return appendString(b, entryValue, p.Config[k])
		})
	}
	return b
}

// appendString appends a string field, leaving out empty ones as proto3 does.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

// appendMessage appends a length-delimited sub-message written by fill.
func appendMessage(b []byte, num protowire.Number, fill func([]byte) []byte) []byte {
	body := fill(nil)
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, body)
}

// Unmarshal decodes a task message into t, which it resets first. Fields it
// does not know are skipped; anything that is not a well-formed version-1
// task is an error wrapping ErrEmpty, ErrUnknownVersion or ErrMalformed.
func Unmarshal(data []byte, t *Task) error {
	*t = Task{}
	if len(data) == 0 {
		return ErrEmpty
	}
	if data[0] != Version {
		return fmt.Errorf("%w %d", ErrUnknownVersion, data[0])
	}
	err := eachField(data[1:], func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case typ == protowire.BytesType:
			return t.setBytes(num, v)
		case typ == protowire.VarintType:
			t.setVarint(num, n)
		case typ == protowire.Fixed64Type && num == fieldScheduledAt:
			t.ScheduledAt = time.Unix(0, int64(n))
		case typ == protowire.Fixed64Type && num == fieldDeadline:
			t.Deadline = time.Unix(0, int64(n))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return t.validate()
}

func (t *Task) setBytes(num protowire.Number, v []byte) error {
	switch num {
	case fieldNamespace:
		t.Namespace = string(v)
	case fieldName:
		t.Name = string(v)
	case fieldUID:
		t.UID = string(v)
	case fieldURL:
		t.URL = string(v)
	case fieldMethod:
		t.Method = string(v)
	case fieldBody:
		t.Body = string(v)
	case fieldCheckNow:
		t.CheckNow = string(v)
	case fieldHeader:
		h, err := decodeHeader(v)
		if err != nil {
			return err
		}
		t.Headers = append(t.Headers, h)
	case fieldExpect:
		return t.Expect.decode(v)
	case fieldPlugin:
		p, err := decodePlugin(v)
		if err != nil {
			return err
		}
		t.Plugins = append(t.Plugins, p)
	}
	return nil
}

func (t *Task) setVarint(num protowire.Number, n uint64) {
	switch num {
	case fieldGeneration:
		t.Generation = int64(n)
	case fieldURLIndex:
		t.URLIndex = int(n)
	case fieldTimeoutMillis:
		t.Timeout = time.Duration(n) * time.Millisecond
	case fieldTrigger:
		t.Trigger = Trigger(n)
	case fieldFailureThreshold:
		t.FailureThreshold = int32(n)
	case fieldSuccessThreshold:
		t.SuccessThreshold = int32(n)
	}
}

func decodeHeader(data []byte) (Header, error) {
	var h Header
	var ref SecretKeyRef
	err := eachField(data, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case headerName:
			h.Name = string(v)
		case headerValue:
			h.Value = string(v)
		case headerSecretName:
			ref.Name = string(v)
		case headerSecretKey:
			ref.Key = string(v)
		}
		return nil
	})
	if ref != (SecretKeyRef{}) {
		h.SecretRef = &ref
	}
	return h, err
}

func (e *Expectations) decode(data []byte) error {
	return eachField(data, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case typ == protowire.BytesType && num == expectStatusCode:
			e.StatusCodes = append(e.StatusCodes, string(v))
		case typ == protowire.BytesType && num == expectBodyRegex:
			e.BodyRegex = string(v)
		case typ == protowire.BytesType && num == expectBodyNotRegex:
			e.BodyNotRegex = string(v)
		case typ == protowire.VarintType && num == expectMaxLatencyMillis:
			e.MaxLatency = time.Duration(n) * time.Millisecond
		case typ == protowire.VarintType && num == expectFollowRedirects:
			follow := protowire.DecodeBool(n)
			e.FollowRedirects = &follow
		case typ == protowire.VarintType && num == expectMaxRedirects:
			limit := int32(n)
			e.MaxRedirects = &limit
		case typ == protowire.VarintType && num == expectTLSSkipVerify:
			e.TLSSkipVerify = protowire.DecodeBool(n)
		}
		return nil
	})
}

func decodePlugin(data []byte) (Plugin, error) {
	var p Plugin
	err := eachField(data, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case pluginName:
			p.Name = string(v)
		case pluginConfig:
			var key, value string
			err := eachField(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if typ == protowire.BytesType && num == entryKey {
					key = string(v)
				} else if typ == protowire.BytesType && num == entryValue {
					value = string(v)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if p.Config == nil {
				p.Config = map[string]string{}
			}
			p.Config[key] = value
		}
		return nil
	})
	return p, err
}

// eachField calls fn for every field of a protobuf message: v for
// length-delimited fields, n for varint and fixed ones. Groups and other
// wire types are skipped.
func eachField(data []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error) error {
	for len(data) > 0 {
		num, typ, tagLen := protowire.ConsumeTag(data)
		if tagLen < 0 {
			return fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(tagLen)) //nolint:errorlint // one wrapped error is enough: callers match ErrMalformed
		}
		data = data[tagLen:]
		var (
			v      []byte
			n      uint64
			valLen int
		)
		switch typ {
		case protowire.BytesType:
			v, valLen = protowire.ConsumeBytes(data)
		case protowire.VarintType:
			n, valLen = protowire.ConsumeVarint(data)
		case protowire.Fixed64Type:
			n, valLen = protowire.ConsumeFixed64(data)
		default:
			valLen = protowire.ConsumeFieldValue(num, typ, data)
		}
		if valLen < 0 {
			return fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(valLen)) //nolint:errorlint // as above
		}
		data = data[valLen:]
		if err := fn(num, typ, v, n); err != nil {
			return err
		}
	}
	return nil
}
