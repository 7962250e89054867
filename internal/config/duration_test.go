package config

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"d: 15s", 15 * time.Second, ""},
		{"d: 2m", 2 * time.Minute, ""},
		{"d: 1h30m", 90 * time.Minute, ""},
		{"d: \"250ms\"", 250 * time.Millisecond, ""},
		{"d: 0s", 0, ""},
		{"x: 1\nd: 15", 0, `line 2: invalid duration "15" (write a number with a unit: 15s, 2m, 1h)`},
		{"d: soon", 0, `line 1: invalid duration "soon" (write a number with a unit: 15s, 2m, 1h)`},
		{"x: 1\n\nd: [15s]", 0, `line 3: expected a duration such as 15s or 2m, got a list`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var v struct {
				X int      `yaml:"x"`
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte(tt.in), &v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.D.Duration != tt.want {
				t.Errorf("got %v, want %v", v.D.Duration, tt.want)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{15 * time.Second, "15s"},
		{2 * time.Minute, "2m"},
		{90 * time.Second, "1m30s"},
		{3 * time.Hour, "3h"},
		{90 * time.Minute, "1h30m"},
		{time.Hour + time.Second, "1h0m1s"},
		{500 * time.Millisecond, "500ms"},
		{0, "0s"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			d := Duration{tt.d}
			if got := d.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			out, err := yaml.Marshal(struct {
				D Duration `yaml:"d"`
			}{d})
			if err != nil {
				t.Fatal(err)
			}
			var back struct {
				D Duration `yaml:"d"`
			}
			if err := yaml.Unmarshal(out, &back); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if back.D != d {
				t.Errorf("round trip through %q gave %v", out, back.D)
			}
		})
	}
}
