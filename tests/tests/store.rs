//! The Redis feature store's batch writer against a real redis-server.

use funnel_store::{
    ApplyOutcome, Keys, MarkerState, Read, RedisConfig, RedisStore, Reply, Store, WriteBatch,
};
use funnel_tests::Redis;
use redis::AsyncCommands;

async fn store(redis: &Redis) -> Store {
    Store::Redis(
        RedisStore::connect(&RedisConfig {
            url: redis.url.clone(),
            ..RedisConfig::default()
        })
        .await
        .unwrap(),
    )
}

fn batch(keys: &Keys) -> WriteBatch {
    let mut b = WriteBatch::new(600);
    b.marker(keys.dedup("e1"), "raw/0/7|s1".into(), MarkerState::Fresh);
    b.hincr("t:counts", "click", 1);
    b.lpush_capped("t:recent", "i1", 2);
    b.expire("t:counts", 60);
    b.expire("t:recent", 60);
    b
}

#[tokio::test]
async fn a_batch_is_written_once_with_its_marker_and_ttls() {
    let redis = Redis::start();
    let keys = Keys::new("t");
    let store = store(&redis).await;
    let mut writer = store.writer();
    let marker = keys.dedup("e1");
    let replies = writer
        .read_watching(std::slice::from_ref(&marker), &[Read::Get(marker.clone())])
        .await
        .unwrap();
    assert_eq!(replies, vec![Reply::Nil]);
    assert_eq!(
        writer.apply(&batch(&keys)).await.unwrap(),
        ApplyOutcome::Applied
    );

    let mut c = redis.conn().await;
    let value: String = c.get(&marker).await.unwrap();
    assert_eq!(value, "raw/0/7|s1");
    let ttl: i64 = c.ttl(&marker).await.unwrap();
    assert!((590..=600).contains(&ttl), "{ttl}");
    let clicks: i64 = c.hget("t:counts", "click").await.unwrap();
    assert_eq!(clicks, 1);
    let ttl: i64 = c.ttl("t:recent").await.unwrap();
    assert!((50..=60).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn a_marker_changed_between_read_and_write_refuses_the_whole_batch() {
    let redis = Redis::start();
    let keys = Keys::new("t");
    let store = store(&redis).await;
    let mut writer = store.writer();
    let marker = keys.dedup("e1");
    writer
        .read_watching(std::slice::from_ref(&marker), &[Read::Get(marker.clone())])
        .await
        .unwrap();
    // Another instance processes the same event meanwhile.
    let mut c = redis.conn().await;
    let _: () = c.set(&marker, "raw/3/1|s9").await.unwrap();

    assert_eq!(
        writer.apply(&batch(&keys)).await.unwrap(),
        ApplyOutcome::Conflict
    );
    let exists: bool = c.exists("t:counts").await.unwrap();
    assert!(!exists, "nothing of the refused batch was written");
    let value: String = c.get(&marker).await.unwrap();
    assert_eq!(value, "raw/3/1|s9");

    // Re-planned after a fresh read, the batch goes through.
    writer
        .read_watching(std::slice::from_ref(&marker), &[Read::Get(marker.clone())])
        .await
        .unwrap();
    let mut replanned = WriteBatch::new(600);
    replanned.marker(marker.clone(), "raw/0/7|s1".into(), MarkerState::Duplicate);
    assert_eq!(
        writer.apply(&replanned).await.unwrap(),
        ApplyOutcome::Applied
    );
}

#[tokio::test]
async fn a_batch_with_nothing_to_read_or_write_needs_no_round_trip() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let mut writer = store.writer();
    assert_eq!(
        writer.read_watching(&[], &[]).await.unwrap(),
        Vec::<Reply>::new()
    );
    assert_eq!(
        writer.apply(&WriteBatch::new(60)).await.unwrap(),
        ApplyOutcome::Applied
    );
}

#[tokio::test]
async fn reads_answer_every_shape() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let mut c = redis.conn().await;
    let _: () = c
        .hset_multiple("h", &[("a", "1"), ("b", "2")])
        .await
        .unwrap();
    let _: () = c.rpush("l", &["x", "y", "z"]).await.unwrap();
    let _: () = c
        .zadd_multiple("z", &[(1.0, "m1"), (3.0, "m3"), (2.0, "m2")])
        .await
        .unwrap();
    let _: () = c.set("s", "v").await.unwrap();
    let replies = store
        .read(&[
            Read::Get("s".into()),
            Read::Get("missing".into()),
            Read::HGetAll("h".into()),
            Read::HMGet("h".into(), vec!["b".into(), "c".into()]),
            Read::LRange("l".into(), 0, 1),
            Read::ZRevRange("z".into(), 0, 1),
        ])
        .await
        .unwrap();
    assert_eq!(replies[0], Reply::Str("v".into()));
    assert_eq!(replies[1], Reply::Nil);
    let mut h = replies[2].clone().into_hash();
    h.sort();
    assert_eq!(h, vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
    assert_eq!(replies[3], Reply::Fields(vec![Some("2".into()), None]));
    assert_eq!(replies[4], Reply::List(vec!["x".into(), "y".into()]));
    assert_eq!(
        replies[5],
        Reply::Scored(vec![("m3".into(), 3.0), ("m2".into(), 2.0)])
    );
}

#[tokio::test]
async fn the_writer_authenticates_and_writes_to_the_database_its_url_names() {
    let redis = Redis::start();
    let mut admin = redis.conn().await;
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", "s3cret"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let keys = Keys::new("t");
    let store = Store::Redis(
        RedisStore::connect(&RedisConfig {
            url: redis.url.replace("redis://", "redis://:s3cret@") + "/3",
            ..RedisConfig::default()
        })
        .await
        .unwrap(),
    );
    let mut writer = store.writer();
    writer
        .read_watching(&[keys.dedup("e1")], &[])
        .await
        .unwrap();
    assert_eq!(
        writer.apply(&batch(&keys)).await.unwrap(),
        ApplyOutcome::Applied
    );
    let _: () = redis::cmd("SELECT")
        .arg(3)
        .query_async(&mut admin)
        .await
        .unwrap();
    let clicks: i64 = admin.hget("t:counts", "click").await.unwrap();
    assert_eq!(clicks, 1, "written to database 3");
    let _: () = redis::cmd("SELECT")
        .arg(0)
        .query_async(&mut admin)
        .await
        .unwrap();
    let in_db0: bool = admin.exists("t:counts").await.unwrap();
    assert!(!in_db0);

    // Without the password, the server's refusal reaches the caller.
    let store = Store::Redis(
        RedisStore::connect(&RedisConfig {
            url: redis.url.clone(),
            ..RedisConfig::default()
        })
        .await
        .unwrap(),
    );
    let mut writer = store.writer();
    let err = writer
        .read_watching(&[keys.dedup("e1")], &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("NOAUTH"), "{err}");
}

#[tokio::test]
async fn a_large_batch_is_applied_whole_and_a_refused_command_is_an_error() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let mut writer = store.writer();
    // 20,000 commands: their replies span many reads of the socket.
    let mut big = WriteBatch::new(600);
    for i in 0..20_000 {
        big.hincr(&format!("t:h{}", i % 100), &format!("f{i}"), i);
    }
    assert_eq!(writer.apply(&big).await.unwrap(), ApplyOutcome::Applied);
    let mut c = redis.conn().await;
    let len: usize = c.hlen("t:h7").await.unwrap();
    assert_eq!(len, 200);
    let v: i64 = c.hget("t:h7", "f19907").await.unwrap();
    assert_eq!(v, 19_907);

    // A command Redis refuses inside EXEC fails the batch with its reason.
    let _: () = c.set("t:str", "x").await.unwrap();
    let mut wrong = WriteBatch::new(600);
    wrong.hincr("t:str", "f", 1);
    let err = writer.apply(&wrong).await.unwrap_err().to_string();
    assert!(err.contains("WRONGTYPE"), "{err}");

    // The writer goes on, on a new connection.
    let replies = writer
        .read_watching(&["t:str".to_string()], &[Read::HGetAll("t:h7".into())])
        .await
        .unwrap();
    assert_eq!(replies[0].clone().into_hash().len(), 200);
    let mut next = WriteBatch::new(600);
    next.hincr("t:h7", "f7", 1);
    assert_eq!(writer.apply(&next).await.unwrap(), ApplyOutcome::Applied);
    let v: i64 = c.hget("t:h7", "f7").await.unwrap();
    assert_eq!(v, 8);
}
