package runner

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// splitFlag parses "--name=value", "-name" and the like; ok is false for
// an arg that is not a flag.
func splitFlag(arg string) (dashes, name, value string, hasValue, ok bool) {
	trimmed := strings.TrimLeft(arg, "-")
	if trimmed == arg || trimmed == "" {
		return "", "", "", false, false
	}
	name, value, hasValue = strings.Cut(trimmed, "=")
	return arg[:len(arg)-len(trimmed)], name, value, hasValue, true
}

// listenFlag reports whether a flag sets an address or port to listen on.
func listenFlag(name string) bool {
	return name == "port" || name == "bind-address" || strings.HasSuffix(name, "-bind-address")
}

// envFlag is the flag an environment variable sets, for the ones webmon
// reads its listen addresses from (WEBMON_METRICS_BIND_ADDRESS).
func envFlag(name string) (string, bool) {
	flag, ok := strings.CutPrefix(name, "WEBMON_")
	if !ok {
		return "", false
	}
	flag = strings.ToLower(strings.ReplaceAll(flag, "_", "-"))
	return flag, listenFlag(flag)
}

// rewriteArgsLocked gives listen flags free loopback ports and points
// paths under the container's mounts (whole args, or a flag's value) at
// their local copies.
func (c *container) rewriteArgsLocked(args []string, ms mounts) ([]string, error) {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		dashes, name, value, hasValue, isFlag := splitFlag(args[i])
		switch {
		case isFlag && listenFlag(name) && !hasValue && i+1 < len(args):
			v, err := c.listenLocked(name, args[i+1])
			if err != nil {
				return nil, err
			}
			out = append(out, args[i], v)
			i++
		case isFlag && listenFlag(name) && hasValue:
			v, err := c.listenLocked(name, value)
			if err != nil {
				return nil, err
			}
			out = append(out, dashes+name+"="+v)
		case isFlag && hasValue:
			if p, ok := ms.local(value); ok {
				value = p
			}
			out = append(out, dashes+name+"="+value)
		default:
			a := args[i]
			if p, ok := ms.local(a); ok {
				a = p
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// rewriteEnvLocked does for env values what rewriteArgsLocked does for args.
func (c *container) rewriteEnvLocked(env *envVars, ms mounts) error {
	for _, n := range env.names {
		if flag, ok := envFlag(n); ok {
			v, err := c.listenLocked(flag, env.values[n])
			if err != nil {
				return fmt.Errorf("env %s: %w", n, err)
			}
			env.values[n] = v
		} else if p, ok := ms.local(env.values[n]); ok {
			env.values[n] = p
		}
	}
	return nil
}

// listenLocked rewrites the value of a listen flag: an address
// ([host]:port) becomes 127.0.0.1:<free port>, a --port its number. Values
// that disable the endpoint ("0") or pick a port anyway (":0") stay. The
// same flag keeps its port across restarts.
func (c *container) listenLocked(flag, value string) (string, error) {
	if flag == "port" {
		port, err := strconv.Atoi(value)
		if err != nil || port == 0 {
			return value, nil
		}
		addr, err := c.allocLocked(flag, port)
		if err != nil {
			return "", err
		}
		_, p, _ := net.SplitHostPort(addr)
		return p, nil
	}
	_, p, err := net.SplitHostPort(value)
	if err != nil {
		return value, nil
	}
	port, err := strconv.Atoi(p)
	if err != nil || port == 0 {
		return value, nil
	}
	return c.allocLocked(flag, port)
}

// allocLocked is the local address standing for the container's port,
// recorded under the flag, the port number and the containerPort's name.
func (c *container) allocLocked(flag string, port int) (string, error) {
	addr, ok := c.addrs[flag]
	if !ok {
		free, err := c.w.r.freePort()
		if err != nil {
			return "", err
		}
		addr = net.JoinHostPort(localIP, strconv.Itoa(free))
		c.addrs[flag] = addr
	}
	c.addrs[strconv.Itoa(port)] = addr
	for _, p := range c.spec.Ports {
		if int(p.ContainerPort) == port && p.Name != "" {
			c.addrs[p.Name] = addr
		}
	}
	return addr, nil
}

// freePort finds a free loopback port that the runner has not handed out
// before. Another process could take it before ours binds it; on this
// single-user machine that has not been seen.
func (r *Runner) freePort() (int, error) {
	r.portsMu.Lock()
	defer r.portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(localIP, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !r.ports[port] {
			if r.ports == nil {
				r.ports = map[int]bool{}
			}
			r.ports[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free loopback port found")
}
