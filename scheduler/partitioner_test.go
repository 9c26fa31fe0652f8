package scheduler

import (
	"testing"

	"github.com/IBM/sarama"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// A task goes where sarama's hash partitioner puts its Website's UID, for
// whatever partition count the producer sees, even after it changes.
func TestSitePartitionerAgreesWithHash(t *testing.T) {
	sp, hash := newSitePartitioner("tasks"), sarama.NewHashPartitioner("tasks")
	if !sp.RequiresConsistency() {
		t.Error("a Website's tasks must stay on one partition")
	}
	sites := make([]*site, 1000)
	for i := range sites {
		uid := uuid.NewUUID()
		sites[i] = &site{uid: uid, key: sarama.ByteEncoder(uid)}
	}
	for _, partitions := range []int32{32, 32, 4, 1, 32} {
		moved := 0
		for _, st := range sites {
			m := &outMessage{tick: tick{site: st}, partition: st.partition.v.Load()} // as publish makes it
			m.ProducerMessage = sarama.ProducerMessage{Key: st.key, Metadata: m}
			got, err := sp.Partition(&m.ProducerMessage, partitions)
			want, _ := hash.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(st.uid)}, partitions)
			if err != nil || got != want {
				t.Fatalf("%d partitions: %s on %d (%v), want %d", partitions, st.uid, got, err, want)
			}
			if got != 0 {
				moved++
			}
		}
		if partitions > 1 && moved == 0 {
			t.Fatalf("%d partitions: every Website on partition 0", partitions)
		}
	}
	// Anything else is hashed as usual.
	other := &sarama.ProducerMessage{Key: sarama.StringEncoder("not-a-task")}
	got, _ := sp.Partition(other, 32)
	if want, _ := hash.Partition(other, 32); got != want {
		t.Errorf("a message that is no task: partition %d, want %d", got, want)
	}
}
