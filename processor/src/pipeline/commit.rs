//! The end of a batch: output published and acknowledged, then states and
//! input offsets written to sled together.

use super::*;

impl Core {
    /// Publishes the pending batch's output, waits for it, then writes states
    /// and offsets to sled.
    pub(super) fn commit(&mut self) -> Result<(), ProcessorError> {
        let started = Instant::now();
        let batch = std::mem::take(&mut self.batch);
        let topics = &self.settings.topics;
        let mut writes: BTreeMap<Part, PartitionWrite> = BTreeMap::new();
        let mut outgoing: Vec<Outgoing<'_>> = Vec::new();
        for (part, owned) in self.parts.iter_mut() {
            let table = &mut owned.table;
            let dirty = table.take_dirty();
            if dirty.is_empty() {
                continue;
            }
            let (stream, p) = *part;
            let position = owned.position.unwrap_or(0);
            let start = batch.starts.get(part).copied().unwrap_or(position);
            let end = batch.ends.get(part).copied().unwrap_or(position);
            for id in dirty {
                let state = table.encoded(&self.contract, &id)?;
                let (value, offset) = match state {
                    Some((v, o)) => (Some(v), Some(o)),
                    None => (None, None),
                };
                outgoing.push(Outgoing {
                    topic: stream.changelog(topics),
                    partition: Some(p),
                    key: id.clone().into_bytes(),
                    payload: value.clone(),
                    headers: changelog_headers(stream.input(topics), p, offset, start, end),
                });
                writes.entry(*part).or_default().entities.push((id, value));
            }
        }
        for d in &batch.dead {
            self.metrics
                .dead_lettered
                .with_label_values(&[d.kind])
                .inc();
            match self.dead_log.admit(d.kind) {
                Some(held_back) => {
                    tracing::warn!(topic = %d.source_topic, partition = d.pos.partition, offset = d.pos.offset, reason = d.kind, error = %d.error, held_back, "dead-lettered (one line per reason every 30 s; held_back counts the others since the last line)")
                }
                None => {
                    tracing::debug!(topic = %d.source_topic, partition = d.pos.partition, offset = d.pos.offset, reason = d.kind, error = %d.error, "dead-lettered")
                }
            }
            let published = d.published();
            outgoing.push(Outgoing {
                topic: &topics.dead_letter,
                partition: None,
                key: published.key,
                payload: published.payload,
                headers: published.headers,
            });
        }
        if !outgoing.is_empty() {
            deliver(&self.producer, &self.runtime, &outgoing)?;
            for o in &outgoing {
                self.metrics.records_out.with_label_values(&[o.topic]).inc();
            }
        }
        for (p, next) in &batch.ends {
            writes.entry(*p).or_default().next_offset = Some(*next);
        }
        for (part, write) in writes {
            let next = write.next_offset;
            self.store.commit(&tree(part.0, part.1), write)?;
            if let Some(n) = next {
                if let Some(owned) = self.parts.get_mut(&part) {
                    owned.position = Some(n);
                    owned.moved.position(n, Instant::now());
                }
                self.group_behind = true;
            }
        }
        let (mut users, mut sessions, mut imports) = (0, 0, 0);
        for ((stream, _), owned) in &self.parts {
            let t = &owned.table;
            let (entities, s) = t.size();
            match stream {
                Stream::Activity => users += entities,
                Stream::Imports => imports += entities,
            }
            sessions += s;
        }
        self.metrics
            .state_size
            .with_label_values(&["imports"])
            .set(imports as i64);
        self.metrics
            .state_size
            .with_label_values(&["users"])
            .set(users as i64);
        self.metrics
            .state_size
            .with_label_values(&["sessions"])
            .set(sessions as i64);
        if batch.records > 0 || !outgoing.is_empty() {
            self.metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}
