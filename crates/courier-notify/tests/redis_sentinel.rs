//! The Redis notifier through Redis Sentinel: finding the master, following a
//! failover without a restart (a master killed with SIGKILL under two notifiers),
//! following a `+switch-master` announcement while the old master still answers,
//! and saying what each sentinel answered when no master can be found. Every
//! server is started here from the `redis-server` binary, on loopback, and killed
//! when the test ends.

mod common;
#[path = "../../../tests/support/sentinel.rs"]
mod sentinel;

use std::time::{Duration, Instant};

use common::{eventually, fresh_prefix, test_options};
use courier_core::{ExecutionId, Notice, Notifier, Subscription, TaskId, TaskState, Topic};
use courier_notify::{OpenError, RedisNotifier};
use sentinel::{FakeSentinel, Passwords, RedisProcess, ScratchDir, SentinelSet};

const WAIT: Duration = Duration::from_secs(5);
/// How long a failover may take, from the kill to a wake-up crossing nodes again.
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

async fn node(url: &str, prefix: &str) -> Result<RedisNotifier, OpenError> {
    RedisNotifier::connect_with(url.parse()?, test_options(prefix)).await
}

/// `Some` if redis-server could be started; under `CI=true` a failure to start it
/// fails the test, otherwise the test is skipped loudly.
fn started<T>(result: Result<T, String>) -> Option<T> {
    match result {
        Ok(it) => Some(it),
        Err(reason) => {
            common::reachable("redis-server (for Sentinel)", Err(reason));
            None
        }
    }
}

/// The names of the clients connected to the Redis on `port`.
fn client_names(port: u16, password: Option<&str>) -> Vec<String> {
    let Ok(mut c) = sentinel::connect(port, password) else {
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

fn completed(task: TaskId) -> Notice {
    Notice::Task {
        task_id: task,
        state: TaskState::Completed,
    }
}

/// Waits for the sentinels to agree on a new master; its port.
async fn failover(set: &SentinelSet, old: u16) -> u16 {
    let deadline = Instant::now() + FAILOVER_BOUND;
    loop {
        match set.failed_over(old) {
            Ok(new) => return new,
            Err(state) => assert!(
                Instant::now() < deadline,
                "no failover within {FAILOVER_BOUND:?}: {state}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `sub` until `wanted` arrives (or `within` passes); whether a `Resync` came
/// first, and whether `wanted` came.
async fn read_until(sub: &mut Subscription, wanted: &Notice, within: Duration) -> (bool, bool) {
    let deadline = Instant::now() + within;
    let mut resynced = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match sub.next_within(left).await {
            Some(Notice::Resync) => resynced = true,
            Some(notice) if &notice == wanted => return (resynced, true),
            Some(_) => {}
            None => break,
        }
    }
    (resynced, false)
}

#[actix_rt::test]
async fn a_killed_master_is_followed_through_the_sentinels_and_every_waiter_wakes() {
    let passwords = Passwords {
        data: Some("data-pw".into()),
        sentinel: Some("sentinel-pw".into()),
    };
    let Some(mut set) = started(SentinelSet::start(passwords.clone())) else {
        return;
    };
    let data_pw = passwords.data.as_deref();
    let prefix = fresh_prefix();
    let url = set.url();

    // The sentinels' password is theirs alone: a wrong one is refused by each.
    let wrong = url.replace("sentinel-pw", "nope");
    let err = node(&wrong, &prefix).await.unwrap_err().to_string();
    for s in &set.sentinels {
        assert!(
            err.contains(&format!("sentinel 127.0.0.1:{}: AUTH refused", s.port)),
            "{err}"
        );
    }
    assert!(!err.contains("data-pw") && !err.contains("nope"), "{err}");

    let a = node(&url, &prefix).await.unwrap();
    let b = node(&url, &prefix).await.unwrap();
    let old_master = set.master_port();
    let on_master = client_names(old_master, data_pw);
    for name in [b.subscription_client_name(), a.publisher_client_name()] {
        assert!(on_master.contains(&name), "{name} on the master: {on_master:?}");
    }
    // Each notifier watches +switch-master on one sentinel.
    let watchers = |name: String| {
        let set = &set;
        let sentinel_pw = passwords.sentinel.clone();
        async move {
            set.sentinels
                .iter()
                .flat_map(|s| client_names(s.port, sentinel_pw.as_deref()))
                .filter(|n| *n == name)
                .count()
        }
    };
    for notifier in [&a, &b] {
        assert!(
            eventually(WAIT, || async { watchers(notifier.sentinel_client_name()).await == 1 }).await,
            "one +switch-master watcher per notifier"
        );
    }
    // Wake-ups cross before the failover.
    let exec = ExecutionId::new();
    let before = TaskId::for_step(exec, 1);
    let mut sub_before = b.subscribe_to_task(before, None).await.unwrap();
    a.publish(vec![completed(before)]).await.unwrap();
    assert_eq!(sub_before.next_within(WAIT).await, Some(completed(before)));
    // Waiters whose wake-up will be published while there is no master, and one
    // whose wake-up comes after the failover.
    let during: Vec<TaskId> = (2..6).map(|n| TaskId::for_step(exec, n)).collect();
    let mut subs_during = Vec::new();
    for task in &during {
        subs_during.push(b.subscribe_to_task(*task, None).await.unwrap());
    }
    let after = TaskId::for_step(exec, 9);
    let mut sub_after = b.subscribe_to_task(after, None).await.unwrap();

    let killed = set.kill_master();
    let killed_at = Instant::now();
    assert_eq!(killed, old_master);
    // Published while the sentinels still name the dead master: it cannot cross
    // (a says so); b's waiters are told to resync once b is back.
    for task in &during {
        let _ = a.publish(vec![completed(*task)]).await;
    }
    let new_master = failover(&set, old_master).await;
    assert_ne!(new_master, old_master);

    // Every waiter of b wakes: those whose notice was lost are told to resync.
    for (task, sub) in during.iter().zip(subs_during.iter_mut()) {
        let woke = sub.next_within(FAILOVER_BOUND).await;
        assert!(
            woke == Some(Notice::Resync) || woke == Some(completed(*task)),
            "the waiter of {task} never woke: {woke:?}"
        );
    }
    assert_eq!(
        sub_before.next_within(FAILOVER_BOUND).await,
        Some(Notice::Resync),
        "b's subscribers resync after the reconnect to the new master"
    );
    // A wake-up published after the failover reaches the other node's subscriber.
    let published = eventually(FAILOVER_BOUND, || async {
        a.publish(vec![completed(after)]).await.is_ok()
    })
    .await;
    assert!(published, "a could not publish to the new master: {:?}", a.stats());
    let (resynced, woke) = read_until(&mut sub_after, &completed(after), FAILOVER_BOUND).await;
    assert!(woke, "the wake-up after the failover never reached b: {:?}", b.stats());
    assert!(resynced, "b's subscriber was told to resync first");
    let took = killed_at.elapsed();
    assert!(took < FAILOVER_BOUND, "took {took:?}");

    // Both notifiers now live on the new master (a, with nothing subscribed, may
    // still be between two attempts), and say they reconnected.
    let names = [
        a.subscription_client_name(),
        b.subscription_client_name(),
        a.publisher_client_name(),
    ];
    let all_there = eventually(WAIT, || async {
        let on_new = client_names(new_master, data_pw);
        names.iter().all(|name| on_new.contains(name))
    })
    .await;
    assert!(
        all_there,
        "{names:?} on the new master: {:?}",
        client_names(new_master, data_pw)
    );
    assert!(b.stats().reconnects >= 1 && b.stats().connected, "{:?}", b.stats());
    // And a fresh subscription works there too.
    let mut work = b.subscribe(vec![Topic::Work]).await.unwrap();
    a.publish(vec![Notice::Work { queue: "q".into() }]).await.unwrap();
    assert_eq!(work.next_within(WAIT).await, Some(Notice::Work { queue: "q".into() }));
    eprintln!("Sentinel failover: a wake-up crossed nodes again {took:?} after the master was killed");
}

#[actix_rt::test]
async fn a_switch_master_announcement_moves_every_connection_while_the_old_master_still_answers() {
    let dir = ScratchDir::new("sentinel-switch");
    let Some(old) = started(RedisProcess::data_node(sentinel::free_port(), None, None, &dir.0)) else {
        return;
    };
    let new = RedisProcess::data_node(sentinel::free_port(), None, None, &dir.0).unwrap();
    let fake = FakeSentinel::start(old.port);
    let url = format!("redis+sentinel://127.0.0.1:{}/{}", fake.port, sentinel::MASTER);
    let prefix = fresh_prefix();
    let a = node(&url, &prefix).await.unwrap();
    let b = node(&url, &prefix).await.unwrap();
    let mut work = b.subscribe(vec![Topic::Work]).await.unwrap();
    a.publish(vec![Notice::Work { queue: "old".into() }]).await.unwrap();
    assert_eq!(work.next_within(WAIT).await, Some(Notice::Work { queue: "old".into() }));
    assert!(client_names(old.port, None).contains(&b.subscription_client_name()));
    assert!(
        eventually(WAIT, || async { fake.watchers() == 2 }).await,
        "both notifiers watch"
    );

    // The sentinels say the master moved; nobody closes a connection to the old
    // one (it is still a master, and answers), yet everything moves.
    fake.switch(new.port);
    assert_eq!(
        work.next_within(WAIT).await,
        Some(Notice::Resync),
        "b re-subscribed on the new master and resyncs"
    );
    assert!(client_names(new.port, None).contains(&b.subscription_client_name()));
    // `a` hears of the switch on its own watch, maybe a moment after `b`: until
    // then its publishes still go to the old master (which answers), so publish
    // until one crosses rather than betting on which node moved first.
    let started = Instant::now();
    let crossed = loop {
        a.publish(vec![Notice::Work { queue: "new".into() }]).await.unwrap();
        match work.next_within(Duration::from_millis(250)).await {
            Some(Notice::Work { queue }) if queue == "new" => break true,
            _ if started.elapsed() > WAIT => break false,
            _ => {}
        }
    };
    assert!(crossed, "no publish from a reached b on the new master within {WAIT:?}");
    let on_new = client_names(new.port, None);
    assert!(on_new.contains(&a.publisher_client_name()), "{on_new:?}");
    let on_old = client_names(old.port, None);
    for name in [
        a.subscription_client_name(),
        b.subscription_client_name(),
        a.publisher_client_name(),
    ] {
        assert!(!on_old.contains(&name), "{name} left the old master: {on_old:?}");
    }
    assert_eq!(b.stats().reconnects, 1, "{:?}", b.stats());
}

#[actix_rt::test]
async fn discovery_passes_over_dead_stale_and_unknowing_sentinels_and_says_what_each_answered() {
    let dir = ScratchDir::new("sentinel-discovery");
    let Some(master) = started(RedisProcess::data_node(sentinel::free_port(), None, None, &dir.0)) else {
        return;
    };
    let replica = RedisProcess::data_node(sentinel::free_port(), None, Some(master.port), &dir.0).unwrap();
    // A sentinel that has not seen the failover names the replica; another is down.
    let stale = FakeSentinel::start(replica.port);
    let good = FakeSentinel::start(master.port);
    let dead = sentinel::free_port();
    let prefix = fresh_prefix();

    let url = format!(
        "redis+sentinel://127.0.0.1:{dead},127.0.0.1:{},127.0.0.1:{}/mymaster",
        stale.port, good.port
    );
    let a = node(&url, &prefix).await.unwrap();
    assert!(client_names(master.port, None).contains(&a.subscription_client_name()));
    assert!(!client_names(replica.port, None).contains(&a.subscription_client_name()));

    let url = format!("redis+sentinel://127.0.0.1:{dead},127.0.0.1:{}/mymaster", stale.port);
    let err = node(&url, &prefix).await.unwrap_err();
    assert!(matches!(err, OpenError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("sentinel 127.0.0.1:{dead}: ")), "{text}");
    assert!(
        text.contains(&format!(
            "sentinel 127.0.0.1:{} names 127.0.0.1:{}: it is not the master (ROLE: slave)",
            stale.port, replica.port
        )),
        "{text}"
    );

    let url = format!("redis+sentinel://127.0.0.1:{}/othermaster", good.port);
    let text = node(&url, &prefix).await.unwrap_err().to_string();
    assert!(text.contains("monitors no master named \"othermaster\""), "{text}");

    // A sentinel that takes connections but never answers (a hung host) costs one
    // time limit, once: the next dial starts with the sentinel that knew.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis+sentinel://{},127.0.0.1:{}/mymaster",
        hung.local_addr().unwrap(),
        good.port
    );
    let started = Instant::now();
    let b = node(&url, &prefix).await.unwrap();
    assert!(client_names(master.port, None).contains(&b.subscription_client_name()));
    assert!(started.elapsed() < 2 * test_options(&prefix).connect_timeout);
}
