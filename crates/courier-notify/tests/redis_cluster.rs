//! The Redis notifier over Redis Cluster: key slots as Redis computes them,
//! wake-ups crossing notifiers through sharded pub/sub with channels spread
//! over the masters (one subscription connection per master in use), a master
//! killed with SIGKILL and replaced by its replica while every waiter still
//! wakes, a graceful failover heard only through the old master's
//! `sunsubscribe`, wake-ups over TLS (`rediss+cluster://`), and the plain comma
//! form told apart from a failover list. Every server is started here from
//! `redis-server`/`redis-cli`, on loopback, and killed when the test ends.

mod common;
#[path = "../../../tests/support/redis_cluster.rs"]
mod redis_cluster;
#[path = "../../../tests/support/sentinel.rs"]
mod sentinel;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{eventually, fresh_prefix, test_options};
use courier_core::{ExecutionId, Notice, Notifier, Subscription, TaskId, TaskState, Topic};
use courier_notify::{OpenError, RedisConfig, RedisConnector, RedisNotifier, key_slot};
use redis_cluster::RedisCluster;

const WAIT: Duration = Duration::from_secs(5);
/// From the kill to every waiter awake and a wake-up crossing again.
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

async fn node(url: &str, prefix: &str) -> Result<RedisNotifier, OpenError> {
    RedisNotifier::connect_with(url.parse()?, test_options(prefix)).await
}

/// The cluster, if redis-server and redis-cli could start one; under `CI=true`
/// a failure fails the test, otherwise the test is skipped loudly.
fn started() -> Option<RedisCluster> {
    match RedisCluster::start() {
        Ok(cluster) => Some(cluster),
        Err(reason) => {
            common::reachable("redis-server and redis-cli (for Redis Cluster)", Err(reason));
            None
        }
    }
}

fn completed(task: TaskId) -> Notice {
    Notice::Task {
        task_id: task,
        state: TaskState::Completed,
    }
}

/// The names of the clients connected to the node on `port`.
fn client_names(port: u16) -> Vec<String> {
    let Ok(mut c) = sentinel::connect(port, None) else {
        return Vec::new();
    };
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap_or_default();
    list.lines()
        .filter_map(|line| {
            line.split(' ')
                .find_map(|f| f.strip_prefix("name="))
                .map(str::to_string)
        })
        .collect()
}

/// The shard channels the node on `port` has subscribers for.
fn shard_channels(port: u16) -> BTreeSet<String> {
    let mut c = sentinel::connect(port, None).unwrap();
    redis::cmd("PUBSUB").arg("SHARDCHANNELS").query(&mut c).unwrap()
}

/// `count` tasks whose channels fall on every master (at least `per_master` each).
fn tasks_on_every_master(
    cluster: &RedisCluster,
    notifier: &RedisNotifier,
    per_master: usize,
) -> (Vec<TaskId>, BTreeMap<u16, Vec<TaskId>>) {
    let exec = ExecutionId::new();
    let masters = cluster.masters();
    let mut by_master: BTreeMap<u16, Vec<TaskId>> = BTreeMap::new();
    let mut all = Vec::new();
    for step in 1.. {
        let task = TaskId::for_step(exec, step);
        let slot = key_slot(notifier.channels().name(&Topic::Task(task)).as_bytes());
        let master = cluster.master_of(slot);
        let held = by_master.entry(master).or_default();
        if held.len() < per_master {
            held.push(task);
            all.push(task);
        }
        if masters
            .iter()
            .all(|m| by_master.get(m).is_some_and(|t| t.len() >= per_master))
        {
            break;
        }
    }
    (all, by_master)
}

#[test]
fn key_slots_are_the_ones_redis_computes() {
    assert_eq!(key_slot(b"foo"), 12182);
    assert_eq!(key_slot(b"bar"), 5061);
    assert_eq!(key_slot(b"hello"), 866);
    assert_eq!(key_slot(b""), 0);
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    assert_ne!(key_slot(b"user1000.following"), key_slot(b"user1000.followers"));
    assert_eq!(key_slot(b"foo{}{bar}"), 8363, "an empty tag: the whole key is hashed");
    assert_eq!(
        key_slot(b"foo{bar}{zap}"),
        key_slot(b"bar"),
        "only the first tag counts"
    );
}

#[actix_rt::test]
async fn wake_ups_cross_notifiers_through_sharded_pub_sub_spread_over_every_master() {
    let Some(cluster) = started() else { return };
    let prefix = fresh_prefix();
    let a = node(&cluster.url(), &prefix).await.unwrap();
    let b = node(&cluster.url(), &prefix).await.unwrap();
    assert!(a.is_cluster() && b.is_cluster());

    // Redis agrees with our slots.
    let mut any = sentinel::connect(cluster.alive()[0], None).unwrap();
    for name in ["foo", "{user1000}.following", &b.channels().name(&Topic::Work)] {
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(name).query(&mut any).unwrap();
        assert_eq!(key_slot(name.as_bytes()), slot, "{name}");
    }

    let (tasks, by_master) = tasks_on_every_master(&cluster, &b, 4);
    assert_eq!(by_master.len(), 3, "the channels fall on the three masters");
    let mut subs: Vec<Subscription> = Vec::new();
    for task in &tasks {
        subs.push(b.subscribe_to_task(*task, None).await.unwrap());
    }
    // Each master holds exactly the channels of its slots, on one connection of b.
    for (master, held) in &by_master {
        let expected: BTreeSet<String> = held.iter().map(|t| b.channels().name(&Topic::Task(*t))).collect();
        assert_eq!(shard_channels(*master), expected, "the shard channels on {master}");
        let names = client_names(*master);
        let subs_here = names.iter().filter(|n| **n == b.subscription_client_name()).count();
        assert_eq!(subs_here, 1, "one subscription connection of b on {master}: {names:?}");
    }
    for replica in cluster.alive().into_iter().filter(|p| !by_master.contains_key(p)) {
        assert!(
            !client_names(replica).contains(&b.subscription_client_name()),
            "no subscription on replica {replica}"
        );
    }

    // One publish call with every task: grouped per master, each wakes its waiter.
    a.publish(tasks.iter().map(|t| completed(*t)).collect()).await.unwrap();
    for (task, sub) in tasks.iter().zip(subs.iter_mut()) {
        assert_eq!(sub.next_within(WAIT).await, Some(completed(*task)), "{task}");
    }
    // A's publishing connections reach only masters.
    for master in cluster.masters() {
        assert!(
            client_names(master).contains(&a.publisher_client_name()),
            "a publishes on {master}"
        );
    }
    // The other fixed channels cross too (in either order: they may be on two
    // shards, and only within a shard is the order kept).
    let mut work = b.subscribe(vec![Topic::Work, Topic::Events]).await.unwrap();
    a.publish(vec![Notice::Work { queue: "q".into() }, Notice::Events])
        .await
        .unwrap();
    let mut heard = vec![work.next_within(WAIT).await, work.next_within(WAIT).await];
    heard.sort_by_key(|n| format!("{n:?}"));
    assert_eq!(
        heard,
        vec![Some(Notice::Events), Some(Notice::Work { queue: "q".into() })]
    );

    // Channels are left when their last subscriber goes.
    drop(subs);
    let left = eventually(WAIT, || async {
        by_master.keys().all(|m| {
            let channels = shard_channels(*m);
            tasks
                .iter()
                .all(|t| !channels.contains(&b.channels().name(&Topic::Task(*t))))
        })
    })
    .await;
    assert!(left, "the task channels were unsubscribed");
    assert_eq!(b.stats().reconnects, 0, "{:?}", b.stats());
}

#[actix_rt::test]
async fn a_killed_master_is_replaced_by_its_replica_and_every_waiter_wakes() {
    let Some(mut cluster) = started() else { return };
    let prefix = fresh_prefix();
    let a = node(&cluster.url(), &prefix).await.unwrap();
    let b = node(&cluster.url(), &prefix).await.unwrap();
    let (tasks, by_master) = tasks_on_every_master(&cluster, &b, 3);
    let mut subs = Vec::new();
    for task in &tasks {
        subs.push(b.subscribe_to_task(*task, None).await.unwrap());
    }
    a.publish(vec![completed(tasks[0])]).await.unwrap();
    assert_eq!(subs[0].next_within(WAIT).await, Some(completed(tasks[0])));

    let (&victim, on_victim) = by_master.iter().next().unwrap();
    let after = on_victim[0];
    cluster.kill(victim);
    let killed_at = Instant::now();
    // Published while the killed master still owns its slots: those cannot cross
    // (a says so); the waiters are told to resync once b is subscribed again.
    let _ = a.publish(tasks.iter().skip(1).map(|t| completed(*t)).collect()).await;
    // Polled without blocking the runtime: b keeps trying to reconnect meanwhile.
    let new_master = loop {
        match cluster.failed_over(victim, Duration::ZERO) {
            Ok(promoted) => break promoted,
            Err(state) => {
                assert!(
                    killed_at.elapsed() < FAILOVER_BOUND,
                    "no failover within {FAILOVER_BOUND:?}: {state}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_ne!(new_master, victim);

    for (task, sub) in tasks.iter().zip(subs.iter_mut()).skip(1) {
        let left = FAILOVER_BOUND.saturating_sub(killed_at.elapsed());
        let woke = sub.next_within(left).await;
        assert!(
            woke == Some(Notice::Resync) || woke == Some(completed(*task)),
            "the waiter of {task} never woke: {woke:?} ({:?})",
            b.stats()
        );
    }
    // A wake-up published after the failover, on a channel of the killed
    // master's slots, reaches b through the promoted replica.
    let after_sub = &mut subs[tasks.iter().position(|t| *t == after).unwrap()];
    let mut crossed = false;
    while !crossed && killed_at.elapsed() < FAILOVER_BOUND {
        let _ = a.publish(vec![completed(after)]).await;
        while let Some(notice) = after_sub.next_within(Duration::from_millis(200)).await {
            if notice == completed(after) {
                crossed = true;
                break;
            }
        }
    }
    let took = killed_at.elapsed();
    assert!(crossed, "no wake-up crossed after the failover: {:?}", b.stats());
    assert!(took < FAILOVER_BOUND, "took {took:?}");
    assert!(
        shard_channels(new_master).contains(&b.channels().name(&Topic::Task(after))),
        "b re-subscribed on the promoted replica"
    );
    assert!(b.stats().reconnects >= 1 && b.stats().connected, "{:?}", b.stats());
    eprintln!("Redis Cluster failover: a wake-up crossed nodes again {took:?} after the master was killed");
}

#[actix_rt::test]
async fn a_manual_failover_unsubscribes_on_the_old_master_and_every_subscriber_resyncs() {
    let Some(cluster) = started() else { return };
    let prefix = fresh_prefix();
    let a = node(&cluster.url(), &prefix).await.unwrap();
    let b = node(&cluster.url(), &prefix).await.unwrap();
    let (tasks, by_master) = tasks_on_every_master(&cluster, &b, 2);
    let mut subs = Vec::new();
    for task in &tasks {
        subs.push(b.subscribe_to_task(*task, None).await.unwrap());
    }
    let (&old, moved) = by_master.iter().next().unwrap();
    let range = cluster.slots().unwrap().into_iter().find(|r| r.master == old).unwrap();
    let replica = range.replicas[0];
    // A graceful failover: nobody's connection to the old master is closed; the
    // old master, now a replica, tells its shard subscribers `sunsubscribe`.
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut sentinel::connect(replica, None).unwrap())
        .unwrap();
    for (task, sub) in tasks.iter().zip(subs.iter_mut()) {
        assert_eq!(
            sub.next_within(FAILOVER_BOUND).await,
            Some(Notice::Resync),
            "the subscriber of {task} resyncs ({:?})",
            b.stats()
        );
    }
    assert!(
        eventually(WAIT, || async { cluster.master_of(range.first) == replica }).await,
        "the replica took over"
    );
    let expected: BTreeSet<String> = moved.iter().map(|t| b.channels().name(&Topic::Task(*t))).collect();
    assert!(
        eventually(WAIT, || async { shard_channels(replica) == expected }).await,
        "b subscribed again on the new master: {:?}",
        shard_channels(replica)
    );
    let task = moved[0];
    let sub = &mut subs[tasks.iter().position(|t| *t == task).unwrap()];
    a.publish(vec![completed(task)]).await.unwrap();
    assert_eq!(
        sub.next_within(WAIT).await,
        Some(completed(task)),
        "a's publishing follows the new master"
    );
    assert!(b.stats().reconnects >= 1, "{:?}", b.stats());
}

#[actix_rt::test]
async fn the_comma_form_is_a_cluster_when_the_nodes_say_so_and_a_failover_list_otherwise() {
    let Some(cluster) = started() else { return };
    let prefix = fresh_prefix();
    let url = cluster.comma_url();
    let a = node(&url, &prefix).await.unwrap();
    let b = node(&cluster.url(), &prefix).await.unwrap();
    assert!(a.is_cluster(), "redis://a,b,... of cluster nodes is a cluster");
    let connector = RedisConnector::new(RedisConfig::parse(&url).unwrap(), WAIT).unwrap();
    assert!(connector.is_cluster("courier-test-probe").await.unwrap());
    let mut sub = b.subscribe(vec![Topic::Events]).await.unwrap();
    a.publish(vec![Notice::Events]).await.unwrap();
    assert_eq!(sub.next_within(WAIT).await, Some(Notice::Events));

    // Two plain servers: the same form is an ordered failover list.
    let dir = sentinel::ScratchDir::new("not-a-cluster");
    let first = sentinel::RedisProcess::data_node(sentinel::free_port(), None, None, &dir.0).unwrap();
    let second = sentinel::RedisProcess::data_node(sentinel::free_port(), None, None, &dir.0).unwrap();
    let url = format!("redis://127.0.0.1:{},127.0.0.1:{}", first.port, second.port);
    let c = node(&url, &prefix).await.unwrap();
    let d = node(&url, &prefix).await.unwrap();
    assert!(!c.is_cluster(), "plain servers make a failover list");
    let connector = RedisConnector::new(RedisConfig::parse(&url).unwrap(), WAIT).unwrap();
    assert!(!connector.is_cluster("courier-test-probe").await.unwrap());
    assert!(client_names(first.port).contains(&d.subscription_client_name()));
    assert!(!client_names(second.port).contains(&d.subscription_client_name()));
    let mut work = d.subscribe(vec![Topic::Work]).await.unwrap();
    c.publish(vec![Notice::Work { queue: "q".into() }]).await.unwrap();
    assert_eq!(work.next_within(WAIT).await, Some(Notice::Work { queue: "q".into() }));

    // A cluster node named alone with redis:// is a plain server to the
    // notifier: the URL is what asks for a cluster.
    let single = format!("redis://127.0.0.1:{}", cluster.alive()[0]);
    assert!(!node(&single, &prefix).await.unwrap().is_cluster());
}

#[actix_rt::test]
async fn rediss_cluster_carries_wake_ups_over_tls_trusting_the_given_ca() {
    let cluster = match RedisCluster::start_tls() {
        Ok(cluster) => cluster,
        Err(reason) => {
            common::reachable(
                "redis-server, redis-cli and openssl (for Redis Cluster over TLS)",
                Err(reason),
            );
            return;
        }
    };
    let prefix = fresh_prefix();
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://"), "{url}");
    let a = node(&url, &prefix).await.unwrap();
    let b = node(&url, &prefix).await.unwrap();
    assert!(a.is_cluster() && a.config().tls.is_some());
    let (tasks, by_master) = tasks_on_every_master(&cluster, &b, 2);
    assert_eq!(by_master.len(), 3);
    let mut subs = Vec::new();
    for task in &tasks {
        subs.push(b.subscribe_to_task(*task, None).await.unwrap());
    }
    a.publish(tasks.iter().map(|t| completed(*t)).collect()).await.unwrap();
    for (task, sub) in tasks.iter().zip(subs.iter_mut()) {
        assert_eq!(sub.next_within(WAIT).await, Some(completed(*task)), "{task}");
    }
    // The comma form over TLS is asked over TLS too.
    let c = node(&cluster.comma_url(), &prefix).await.unwrap();
    assert!(c.is_cluster());
    // Without the CA the nodes' certificate is not trusted.
    let untrusted = format!("rediss+cluster://{}", cluster.hosts());
    let err = node(&untrusted, &prefix).await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}
