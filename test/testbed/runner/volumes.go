package runner

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

const defaultFileMode = 0o644

// writeVolumes writes every mounted volume of the pod into its folder and
// returns each one's path.
func (w *podWorker) writeVolumes(ctx context.Context) (map[string]string, error) {
	mounted := map[string]bool{}
	for _, c := range w.all() {
		for _, m := range c.spec.VolumeMounts {
			mounted[m.Name] = true
		}
	}
	objs := newObjects(ctx, w.r.cs, w.pod.Namespace)
	dirs := map[string]string{}
	for _, v := range w.pod.Spec.Volumes {
		if !mounted[v.Name] {
			continue
		}
		dir := filepath.Join(w.dir, "volumes", v.Name)
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := w.writeVolume(ctx, objs, v, dir); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		dirs[v.Name] = dir
	}
	return dirs, nil
}

func (w *podWorker) writeVolume(ctx context.Context, objs *objects, v corev1.Volume, dir string) error {
	switch {
	case v.EmptyDir != nil:
		return nil
	case v.Secret != nil:
		return writeObject(objs, dir, "Secret", v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, v.Secret.DefaultMode)
	case v.ConfigMap != nil:
		return writeObject(objs, dir, "ConfigMap", v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, v.ConfigMap.DefaultMode)
	case v.DownwardAPI != nil:
		return w.writeDownwardAPI(dir, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode)
	case v.Projected != nil:
		return w.writeProjected(ctx, objs, dir, v.Projected)
	}
	return fmt.Errorf("only emptyDir, secret, configMap, downwardAPI and projected volumes run locally")
}

func (w *podWorker) writeProjected(ctx context.Context, objs *objects, dir string, p *corev1.ProjectedVolumeSource) error {
	for _, s := range p.Sources {
		var err error
		switch {
		case s.Secret != nil:
			err = writeObject(objs, dir, "Secret", s.Secret.Name, s.Secret.Items, s.Secret.Optional, p.DefaultMode)
		case s.ConfigMap != nil:
			err = writeObject(objs, dir, "ConfigMap", s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, p.DefaultMode)
		case s.DownwardAPI != nil:
			err = w.writeDownwardAPI(dir, s.DownwardAPI.Items, p.DefaultMode)
		case s.ServiceAccountToken != nil:
			err = w.writeToken(ctx, dir, s.ServiceAccountToken, p.DefaultMode)
		default:
			err = fmt.Errorf("only secret, configMap, downwardAPI and serviceAccountToken projections run locally")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeObject writes a Secret's or ConfigMap's keys, or the items chosen,
// as files.
func writeObject(objs *objects, dir, kind, name string, items []corev1.KeyToPath, optional *bool, defaultMode *int32) error {
	data, err := objs.object(kind, name, optional)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		for _, k := range slices.Sorted(maps.Keys(data)) {
			if err := writeFile(dir, k, data[k], nil, defaultMode); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if data == nil || (optional != nil && *optional) {
				continue
			}
			return fmt.Errorf("key %q not found in %s %q", it.Key, strings.ToLower(kind), name)
		}
		if err := writeFile(dir, it.Path, v, it.Mode, defaultMode); err != nil {
			return err
		}
	}
	return nil
}

func (w *podWorker) writeDownwardAPI(dir string, items []corev1.DownwardAPIVolumeFile, defaultMode *int32) error {
	for _, it := range items {
		var val string
		var err error
		switch {
		case it.FieldRef != nil:
			val, err = fieldValue(w.pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			if it.ResourceFieldRef.ContainerName == "" {
				return fmt.Errorf("%s: a resourceFieldRef in a volume needs its containerName", it.Path)
			}
			val, err = w.resourceValue(corev1.Container{}, it.ResourceFieldRef)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", it.Path, err)
		}
		if err := writeFile(dir, it.Path, []byte(val), it.Mode, defaultMode); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes one file of a volume with its mode, readable by its
// owner whatever the mode, since the process runs as the runner's user.
func writeFile(dir, rel string, data []byte, mode, defaultMode *int32) error {
	if !filepath.IsLocal(rel) {
		return fmt.Errorf("path %q leaves the volume", rel)
	}
	perm := os.FileMode(defaultFileMode)
	if defaultMode != nil {
		perm = os.FileMode(*defaultMode)
	}
	if mode != nil {
		perm = os.FileMode(*mode)
	}
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return err
	}
	return os.Chmod(p, perm.Perm()|0o400)
}

// mount maps a path inside a container to where it is on this machine.
type mount struct{ inside, local string }

// mounts are a container's, the deepest mountPath first.
type mounts []mount

// local is where p is on this machine, if it is under a mount.
func (ms mounts) local(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") {
		return "", false
	}
	for _, m := range ms {
		if p == m.inside {
			return m.local, true
		}
		if rest, ok := strings.CutPrefix(p, strings.TrimSuffix(m.inside, "/")+"/"); ok {
			return filepath.Join(m.local, rest), true
		}
	}
	return "", false
}

func (c *container) mountsLocked() (mounts, error) {
	if c.w.volumes == nil {
		return nil, fmt.Errorf("the pod's volumes are not written yet")
	}
	ms := make(mounts, 0, len(c.spec.VolumeMounts))
	for _, m := range c.spec.VolumeMounts {
		dir, ok := c.w.volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("volume mount %s: no volume %q", m.MountPath, m.Name)
		}
		if m.SubPathExpr != "" {
			return nil, fmt.Errorf("volume mount %s: subPathExpr is not supported by the local runner", m.MountPath)
		}
		local := dir
		if m.SubPath != "" {
			if !filepath.IsLocal(m.SubPath) {
				return nil, fmt.Errorf("volume mount %s: subPath %q leaves the volume", m.MountPath, m.SubPath)
			}
			local = filepath.Join(dir, m.SubPath)
		}
		ms = append(ms, mount{inside: filepath.Clean(m.MountPath), local: local})
	}
	sort.SliceStable(ms, func(i, j int) bool { return len(ms[i].inside) > len(ms[j].inside) })
	return ms, nil
}
