//! Writes in bulk, in passes of distinct rows. One set-based statement changes
//! a row at most once, so a row (a task, a webhook delivery) named twice in a
//! batch waits for the next pass, where it sees what the first did, as it
//! would one write at a time.

use std::collections::HashSet;
use std::hash::Hash;

/// The passes over `rows`: positions in order, each pass naming a row at most
/// once, a row's later mentions in later passes.
pub(crate) fn passes<K: Hash + Eq + Copy>(rows: &[K]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut remaining: Vec<usize> = (0..rows.len()).collect();
    while !remaining.is_empty() {
        let mut seen = HashSet::new();
        let (this, later): (Vec<usize>, Vec<usize>) = remaining.into_iter().partition(|&i| seen.insert(rows[i]));
        out.push(this);
        remaining = later;
    }
    out
}

/// The results of every pass put back at their items' positions (`len` items).
pub(crate) fn in_item_order<R>(len: usize, done: Vec<(Vec<usize>, Vec<R>)>) -> Vec<R> {
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(len).collect();
    for (pass, pass_results) in done {
        for (i, result) in pass.into_iter().zip(pass_results) {
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every item has a result from its pass"))
        .collect()
}
