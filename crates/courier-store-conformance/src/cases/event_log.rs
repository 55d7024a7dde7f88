//! The event log: gap-free sequences in commit order, cursors, filters, trimming.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use courier_core::{
    EVENT_SCAN_WINDOW, Effect, EffectWrite, EventFilter, EventType, ExecutionId, NewExecution, Progress, TaskId,
    WriteBatch,
};
use serde_json::json;

use crate::support::*;

/// Appends `count` progress events to `execution` in one commit, numbered from
/// `first` (in `detail.n`), reported by tasks at steps 1 to 3 in turn.
async fn append_progress_events(store: &DynStore, execution: ExecutionId, first: usize, count: usize) {
    let effects = (first..first + count)
        .map(|n| EffectWrite {
            fence: None,
            execution_id: execution,
            parent_id: Some(TaskId::for_step(execution, (n % 3) as i64 + 1)),
            step: 1000 + n as i64,
            effect: Effect::Progress(Progress {
                detail: Some(json!({"n": n})),
                ..Progress::default()
            }),
        })
        .collect();
    let results = store
        .commit(Arc::new(WriteBatch {
            effects,
            ..WriteBatch::default()
        }))
        .await
        .expect("commit");
    assert!(results.effects.iter().all(Result::is_ok), "{:?}", results.effects);
    assert_eq!(results.changes.len(), count, "one change per progress report");
}

fn n_of(event: &courier_core::Event) -> i64 {
    event.data["detail"]["n"].as_i64().expect("a numbered progress event")
}

/// Concurrent appends get contiguous, unique sequence numbers; reads page after a
/// cursor and filter by execution, task and type.
pub async fn event_sequences_are_gap_free_and_readable_after_a_cursor(store: DynStore) {
    let execs = dispatch_many(&store, "logged", 8).await;
    let base = store.last_event_seq().await.unwrap();
    let appenders = execs.iter().map(|exec| {
        let (store, exec) = (store.clone(), *exec);
        tokio::spawn(async move {
            for batch in 0..5 {
                append_progress_events(&store, exec, batch * 5, 5).await;
            }
        })
    });
    for a in futures::future::join_all(appenders).await {
        a.unwrap();
    }
    assert_eq!(store.last_event_seq().await.unwrap(), base + 200);
    let read = store
        .read_events(&EventFilter::after(base).limit(1000))
        .await
        .unwrap()
        .events;
    assert_eq!(
        read.iter().map(|e| e.seq).collect::<Vec<_>>(),
        ((base + 1)..=(base + 200)).collect::<Vec<_>>(),
        "gap-free and unique"
    );
    let page = store
        .read_events(&EventFilter::after(base + 150).limit(20))
        .await
        .unwrap()
        .events;
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        ((base + 151)..=(base + 170)).collect::<Vec<_>>()
    );

    let exec = execs[3];
    let mine = store
        .read_events(&EventFilter::after(0).execution(exec).types([EventType::TaskProgress]))
        .await
        .unwrap()
        .events;
    assert_eq!(mine.len(), 25);
    let ns: Vec<i64> = mine.iter().map(n_of).collect();
    assert_eq!(ns, (0..25).collect::<Vec<_>>(), "one appender's events keep its order");
    let all_mine = store
        .read_events(&EventFilter::after(0).execution(exec))
        .await
        .unwrap()
        .events;
    assert_eq!(
        types(&all_mine[..2]),
        [EventType::ExecutionCreated, EventType::TaskCreated],
        "the dispatch's events come first"
    );
    assert_eq!(all_mine.len(), 27);
    let one_task = store
        .read_events(&EventFilter::after(0).task(TaskId::for_step(exec, 1)))
        .await
        .unwrap()
        .events;
    assert_eq!(one_task.len(), 9);
    assert!(
        store
            .read_events(&EventFilter::after(0).execution(exec).types([EventType::TaskCompleted]))
            .await
            .unwrap()
            .events
            .is_empty()
    );
    let typed = store
        .read_events(
            &EventFilter::after(0)
                .execution(exec)
                .types([EventType::TaskCompleted, EventType::TaskProgress])
                .limit(4),
        )
        .await
        .unwrap()
        .events;
    assert_eq!(typed.len(), 4);
    let now = store.now().await.unwrap();
    assert_close(typed[0].timestamp, now, std::time::Duration::from_secs(10), "timestamp");
}

/// A reader following the log with a cursor, while writers append concurrently,
/// ends up with every event: what commits later never gets a lower sequence
/// number than what a reader has already passed.
pub async fn a_tailing_reader_never_skips_a_committed_event(store: DynStore) {
    let base = store.last_event_seq().await.unwrap();
    let writing = Arc::new(AtomicBool::new(true));
    let reader = {
        let (store, writing) = (store.clone(), writing.clone());
        tokio::spawn(async move {
            let mut cursor = base;
            let mut seen = Vec::new();
            loop {
                let finished = !writing.load(Ordering::SeqCst);
                let batch = store
                    .read_events(&EventFilter::after(cursor).limit(500))
                    .await
                    .unwrap()
                    .events;
                if let Some(last) = batch.last() {
                    cursor = last.seq;
                }
                let empty = batch.is_empty();
                seen.extend(batch.into_iter().map(|e| e.seq));
                if finished && empty {
                    return seen;
                }
            }
        })
    };
    let writers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let exec = dispatch(&store, activity("logged")).await;
            let mut next = 0;
            for n in 0..60 {
                let size = 1 + n % 4;
                append_progress_events(&store, exec, next, size).await;
                next += size;
            }
        })
    });
    for w in futures::future::join_all(writers).await {
        w.unwrap();
    }
    writing.store(false, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let last = store.last_event_seq().await.unwrap();
    let expected: Vec<i64> = ((base + 1)..=last).collect();
    let distinct: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), distinct.len(), "no event read twice");
    assert_eq!(
        distinct.into_iter().collect::<Vec<_>>(),
        expected,
        "the tailing reader missed events"
    );
}

/// Trimming deletes old events but their sequence numbers are never handed out again.
pub async fn trimmed_sequence_numbers_are_never_reused(store: DynStore) {
    let exec = dispatch(&store, activity("logged")).await;
    append_progress_events(&store, exec, 0, 3).await;
    let last = store.last_event_seq().await.unwrap();
    assert_eq!(last, 5, "two dispatch events and three progress events");
    let future = store.now().await.unwrap() + chrono::Duration::seconds(5);
    assert_eq!(store.trim_events(future).await.unwrap(), 5);
    assert!(
        store
            .read_events(&EventFilter::after(0))
            .await
            .unwrap()
            .events
            .is_empty()
    );
    assert_eq!(store.last_event_seq().await.unwrap(), last);
    append_progress_events(&store, exec, 9, 1).await;
    let next = store.read_events(&EventFilter::after(0)).await.unwrap().events;
    assert_eq!(next.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![last + 1]);

    let past = store.now().await.unwrap() - chrono::Duration::seconds(60);
    assert_eq!(store.trim_events(past).await.unwrap(), 0);
}

/// Large appends, mixing internal and user executions, mark each event by its
/// own execution, whether the event says so itself or the store looks it up
/// (a store may do either differently for large appends).
pub async fn internal_events_are_marked_in_a_large_mixed_batch(store: DynStore) {
    let batch: Vec<NewExecution> = (0..150)
        .map(|i| {
            let function = if i % 3 == 0 { "courier.webhook.deliver" } else { "send" };
            NewExecution::new(activity(function))
        })
        .collect();
    let internal: HashSet<ExecutionId> = batch
        .iter()
        .filter(|e| courier_core::is_internal(&e.spec.function))
        .map(|e| e.id)
        .collect();
    let ids: Vec<ExecutionId> = batch.iter().map(|e| e.id).collect();
    store.dispatch(batch).await.unwrap();
    // Progress events do not say whether they are internal: a store looks
    // their executions up, many at once here.
    append_progress_events(&store, ids[0], 0, 100).await;
    append_progress_events(&store, ids[1], 100, 100).await;
    let all = store
        .read_events(&EventFilter::after(0).limit(1000))
        .await
        .unwrap()
        .events;
    assert_eq!(
        all.len(),
        500,
        "two events for each of 150 executions, 200 progress reports"
    );
    for e in &all {
        let id = e.execution_id.expect("execution events");
        assert_eq!(e.internal, internal.contains(&id), "{e:?}");
    }
    let public = store
        .read_events(&EventFilter::after(0).internal(false).limit(1000))
        .await
        .unwrap()
        .events;
    assert_eq!(public.len(), 300);
}

/// Every event of Courier's own executions (`courier.*` functions) is marked
/// internal, those that do not name the function (progress) included, and a
/// reader that leaves them out gets only the others; a user's execution stays
/// public even where its tasks have `courier.*` names.
pub async fn internal_events_are_marked_and_left_out_when_asked(store: DynStore) {
    let mine = dispatch(&store, activity("send")).await;
    let internal = dispatch(&store, activity("courier.webhook.deliver")).await;
    append_progress_events(&store, internal, 0, 2).await;
    append_progress_events(&store, mine, 2, 1).await;
    let all = store.read_events(&EventFilter::after(0)).await.unwrap().events;
    assert_eq!(all.len(), 7, "two dispatches of two events, three progress reports");
    for e in &all {
        assert_eq!(e.internal, e.execution_id == Some(internal), "{e:?}");
    }
    let public = store
        .read_events(&EventFilter::after(0).internal(false))
        .await
        .unwrap()
        .events;
    assert!(!public.is_empty());
    assert!(public.iter().all(|e| e.execution_id == Some(mine)), "{public:?}");
    assert_eq!(public.len(), 3);
    assert!(public.iter().all(|e| EventFilter::after(0).internal(false).matches(e)));
    // The filter composes with types and the cursor.
    let created = store
        .read_events(
            &EventFilter::after(0)
                .types([EventType::ExecutionCreated, EventType::TaskProgress])
                .internal(false),
        )
        .await
        .unwrap()
        .events;
    assert_eq!(types(&created), [EventType::ExecutionCreated, EventType::TaskProgress]);
    let after = store
        .read_events(&EventFilter::after(public[0].seq).internal(false).limit(1))
        .await
        .unwrap()
        .events;
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [public[1].seq]);
}

/// A read that must look at every event after its cursor to find its matches
/// (by type, or leaving internal events out) looks at most
/// [`EVENT_SCAN_WINDOW`] seqs per read: a page may come back empty yet move the
/// cursor, and paging on from its `through` finds every match, in order, once.
/// A read that names an execution is not bounded so.
pub async fn a_read_that_scans_the_log_pages_through_it_a_window_at_a_time(store: DynStore) {
    let busy = dispatch(&store, activity("busy")).await;
    let base = store.last_event_seq().await.unwrap();
    let window = usize::try_from(EVENT_SCAN_WINDOW).unwrap();
    for chunk in 0..10 {
        append_progress_events(&store, busy, chunk * (window / 10 + 50), window / 10 + 50).await;
    }
    let rare = dispatch(&store, activity("rare")).await;
    let head = store.last_event_seq().await.unwrap();
    assert_eq!(head, base + EVENT_SCAN_WINDOW + 500 + 2);

    let created = EventFilter::after(base).types([EventType::ExecutionCreated]).limit(10);
    let first = store.read_events(&created).await.unwrap();
    assert!(first.events.is_empty(), "{:?}", first.events);
    assert_eq!(first.head, head);
    assert_eq!(
        first.through,
        base + EVENT_SCAN_WINDOW,
        "looked one window past the cursor"
    );
    assert!(!first.caught_up());

    let second = store
        .read_events(&EventFilter {
            after: first.through,
            ..created.clone()
        })
        .await
        .unwrap();
    assert_eq!(second.events.len(), 1);
    assert_eq!(second.events[0].execution_id, Some(rare));
    assert_eq!(second.through, head);
    assert!(second.caught_up());

    // A full page looked as far as its last event.
    let progress = EventFilter::after(base).types([EventType::TaskProgress]).limit(5);
    let page = store.read_events(&progress).await.unwrap();
    assert_eq!(page.events.iter().map(n_of).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(page.through, page.events[4].seq);

    // Leaving internal events out scans the log too.
    let public = store
        .read_events(&EventFilter::after(base).internal(false).limit(0))
        .await
        .unwrap();
    assert_eq!(public.events.len(), window);
    assert_eq!(public.through, base + EVENT_SCAN_WINDOW);

    // Naming the execution reads it whole, however far it is past the cursor.
    let mine = store
        .read_events(&EventFilter::after(base).execution(rare))
        .await
        .unwrap();
    assert_eq!(
        types(&mine.events),
        [EventType::ExecutionCreated, EventType::TaskCreated]
    );
    assert_eq!(mine.through, head);
    assert!(mine.caught_up());
}
