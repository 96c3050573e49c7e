use super::*;

const P0: Part = (Stream::Activity, 0);
const P1: Part = (Stream::Activity, 1);

fn take(h: &Handoff, part: Part, offsets: std::ops::Range<i64>, m: &Metrics) -> Vec<Queued> {
    let mut filling = hold(&h.filling);
    offsets
        .map(|o| filling.accept(part, (o, Some(b"k"), Some(b"v")), || Authority::Actor, m))
        .collect()
}

/// Each partition's offsets, in the order the batches come.
fn offsets(batches: &[Polled]) -> Vec<Vec<(Part, Vec<i64>)>> {
    batches
        .iter()
        .map(|b| {
            b.queues
                .iter()
                .map(|(p, q)| (*p, q.offsets_each()))
                .collect()
        })
        .collect()
}

#[test]
fn a_revocation_takes_the_batch_handed_over_before_the_one_being_filled() {
    let m = Metrics::new().expect("metrics register");
    let h = Handoff::default();
    h.own(P0, Some(10));
    h.own(P1, None);
    take(&h, P0, 10..13, &m);
    take(&h, P1, 0..2, &m);
    assert!(h.hand_over(false));
    take(&h, P0, 13..15, &m);
    // Re-delivered records are not taken twice.
    take(&h, P0, 12..14, &m);
    let all = h.take_all();
    assert_eq!(
        offsets(&all),
        vec![
            vec![(P0, vec![10, 11, 12]), (P1, vec![0, 1])],
            vec![(P0, vec![13, 14])],
        ]
    );
    assert_eq!(all.iter().map(|b| b.records).collect::<Vec<_>>(), [5, 2]);
    assert!(h.take_all().is_empty());
    assert!(h.hand_over(false), "nothing to hand over is not a failure");
    assert!(h.take_ready().is_none());
}

#[test]
fn a_second_batch_waits_until_the_first_is_taken() {
    let m = Metrics::new().expect("metrics register");
    let h = Handoff::default();
    h.own(P0, Some(0));
    take(&h, P0, 0..3, &m);
    assert!(h.hand_over(false));
    take(&h, P0, 3..5, &m);
    std::thread::scope(|s| {
        let second = s.spawn(|| h.hand_over(false));
        // The first batch is still in the slot until taken here; the
        // second cannot have overwritten it.
        let first = h.take_ready().expect("the first batch waits in the slot");
        assert_eq!(offsets(&[first]), vec![vec![(P0, vec![0, 1, 2])]]);
        assert!(second.join().expect("no panic"));
    });
    assert_eq!(
        offsets(&h.take_ready().into_iter().collect::<Vec<_>>()),
        vec![vec![(P0, vec![3, 4])]]
    );
}

#[test]
fn a_stopped_fold_thread_releases_a_waiting_hand_over() {
    let m = Metrics::new().expect("metrics register");
    let h = Handoff::default();
    h.own(P0, Some(0));
    take(&h, P0, 0..1, &m);
    assert!(h.hand_over(false));
    take(&h, P0, 1..2, &m);
    std::thread::scope(|s| {
        let waiting = s.spawn(|| h.hand_over(false));
        h.fail(ProcessorError::Thread("test".into()));
        h.worker_returned();
        assert!(!waiting.join().expect("no panic"));
    });
    assert!(matches!(h.failure(), Some(ProcessorError::Thread(_))));
}

#[test]
fn a_partition_given_up_takes_its_records_out_of_the_count() {
    let m = Metrics::new().expect("metrics register");
    let h = Handoff::default();
    h.own(P0, Some(0));
    h.own(P1, Some(0));
    take(&h, P0, 0..4, &m);
    take(&h, P1, 0..3, &m);
    h.disown(&[P0]);
    assert!(matches!(take(&h, P0, 4..5, &m)[..], [Queued::Taken]));
    // Owned again from its stored offset: the old queue is gone.
    h.own(P1, Some(1));
    take(&h, P1, 0..3, &m);
    let all = h.take_all();
    assert_eq!(offsets(&all), vec![vec![(P1, vec![1, 2])]]);
    assert_eq!(all[0].records, 2);
}

#[test]
fn what_waits_is_counted_from_the_high_watermarks_heard() {
    let m = Metrics::new().expect("metrics register");
    let h = Handoff::default();
    h.own(P0, Some(100));
    h.own(P1, None);
    assert_eq!(h.behind(), 0, "nothing heard yet");
    h.heard_high(P0, 1_100);
    h.heard_high(P1, 500);
    assert_eq!(h.behind(), 1_000, "P1's position is not known yet");
    take(&h, P0, 100..400, &m);
    take(&h, P1, 0..10, &m);
    assert_eq!(h.behind(), 700 + 490);
    // A high watermark heard before the partition caught up counts
    // nothing once it is passed.
    take(&h, P1, 10..600, &m);
    assert_eq!(h.behind(), 700);
    h.disown(&[P0]);
    h.heard_high(P0, 5_000);
    assert_eq!(h.behind(), 0, "a partition given up counts nothing");
}

#[test]
fn a_skipped_record_asks_for_a_seek_back() {
    let m = Metrics::new().expect("metrics register");
    let h = Handoff::default();
    h.own(P0, Some(1000));
    let got = take(&h, P0, 1006..1007, &m);
    assert!(matches!(got[..], [Queued::SeekBack(P0, 936)]));
    assert!(h.take_all().is_empty());
}
