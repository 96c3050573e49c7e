package io.sessionfold.bench;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The presence fold of sessionfold's benchmark as a Kafka Streams application:
 * per user and session, heartbeat and page-view counts, last activity and
 * current page, in a RocksDB store with its changelog, exactly-once v2.
 *
 * <p>Arguments: bootstrap servers, input topic, the activity schema file
 * (activity.avsc), application id, state directory. It reads the records the
 * way any Avro client following the specification reads them: single-object
 * encoding, the writer's fingerprint checked.
 */
public final class PresenceStreams {
    private static final String STORE = "presence";

    public static void main(String[] args) throws IOException, InterruptedException {
        if (args.length != 5) {
            System.err.println("usage: PresenceStreams BOOTSTRAP TOPIC SCHEMA.avsc APP_ID STATE_DIR");
            System.exit(2);
        }
        Schema schema = new Schema.Parser().parse(new File(args[2]));
        StreamsBuilder builder = new StreamsBuilder();
        builder.addStateStore(
                Stores.keyValueStoreBuilder(
                                Stores.persistentKeyValueStore(STORE), Serdes.String(), Serdes.ByteArray())
                        .withCachingEnabled());
        builder.stream(args[1], Consumed.with(Serdes.String(), Serdes.ByteArray()))
                .process(() -> new Fold(schema), STORE);

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            stopped.countDown();
        }));
        streams.start();
        stopped.await();
    }

    /** Folds one activity event into its session's state. */
    static final class Fold implements Processor<String, byte[], Void, Void> {
        private final BinaryMessageDecoder<GenericRecord> decoder;
        private KeyValueStore<String, byte[]> store;

        Fold(Schema schema) {
            this.decoder = new BinaryMessageDecoder<>(GenericData.get(), schema);
        }

        @Override
        public void init(ProcessorContext<Void, Void> context) {
            store = context.getStateStore(STORE);
        }

        @Override
        public void process(Record<String, byte[]> record) {
            GenericRecord e;
            try {
                e = decoder.decode(record.value());
            } catch (IOException | RuntimeException bad) {
                return;
            }
            String key = e.get("user_id") + "\u0000" + e.get("session_id");
            long at = (Long) e.get("occurred_at");
            GenericRecord body = (GenericRecord) e.get("event");
            Session s = Session.read(store.get(key));
            Object page = body.getSchema().getField("page") == null ? null : body.get("page");
            switch (body.getSchema().getName()) {
                case "Heartbeat" -> s.heartbeats++;
                case "PageViewed" -> s.pageViews++;
                default -> { }
            }
            if (page != null && at >= s.pageAt) {
                s.page = page.toString();
                s.pageAt = at;
            }
            s.lastActivity = Math.max(s.lastActivity, at);
            store.put(key, s.write());
        }
    }

    /** A session's state, as stored. */
    static final class Session {
        long heartbeats;
        long pageViews;
        long lastActivity = Long.MIN_VALUE;
        long pageAt = Long.MIN_VALUE;
        String page;

        static Session read(byte[] b) {
            Session s = new Session();
            if (b == null) {
                return s;
            }
            ByteBuffer in = ByteBuffer.wrap(b);
            s.heartbeats = in.getLong();
            s.pageViews = in.getLong();
            s.lastActivity = in.getLong();
            s.pageAt = in.getLong();
            int n = in.getInt();
            if (n >= 0) {
                byte[] page = new byte[n];
                in.get(page);
                s.page = new String(page, StandardCharsets.UTF_8);
            }
            return s;
        }

        byte[] write() {
            byte[] page = this.page == null ? null : this.page.getBytes(StandardCharsets.UTF_8);
            ByteBuffer out = ByteBuffer.allocate(36 + (page == null ? 0 : page.length));
            out.putLong(heartbeats).putLong(pageViews).putLong(lastActivity).putLong(pageAt);
            out.putInt(page == null ? -1 : page.length);
            if (page != null) {
                out.put(page);
            }
            return out.array();
        }
    }
}
