//! The lifecycles of executions and tasks, and which moves between states are legal.

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),*
        }

        impl $name {
            /// Every value, in lifecycle order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The wire and storage spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ParseEnumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)*
                    _ => Err($crate::ParseEnumError { what: stringify!($name), value: s.to_string() }),
                }
            }
        }

        // The OpenAPI schema lists the same spellings, described by the doc's first paragraph.
        #[cfg(feature = "openapi")]
        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                let doc: &[&str] = &[$(stringify!($meta)),*];
                $crate::openapi::schema(::serde_json::json!({
                    "type": "string",
                    "enum": $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
                    "description": $crate::openapi::first_paragraph(&$crate::openapi::doc_text(doc)),
                }))
            }
        }

        #[cfg(feature = "openapi")]
        impl ::utoipa::ToSchema for $name {}

        // Serde uses the same spelling as `as_str`, so storage, wire and logs agree.
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// Where an execution is in its life:
    /// `pending → running → completed | failed | timed_out | cancelled`.
    ///
    /// ```
    /// use courier_core::ExecutionState;
    /// assert!(ExecutionState::Running.can_become(ExecutionState::Completed));
    /// assert!(!ExecutionState::Completed.can_become(ExecutionState::Running));
    /// assert_eq!("timed_out".parse::<ExecutionState>().unwrap(), ExecutionState::TimedOut);
    /// ```
    ExecutionState {
        /// Dispatched; its root task has not started yet.
        Pending => "pending",
        /// Its root task has started at least once.
        Running => "running",
        /// The root task returned a result.
        Completed => "completed",
        /// The root task failed for good.
        Failed => "failed",
        /// The execution outlived its expiry.
        TimedOut => "timed_out",
        /// Someone cancelled it.
        Cancelled => "cancelled",
    }
}

impl ExecutionState {
    /// No further work happens for an execution in this state (a failed one can
    /// still be reopened by replaying its dead letter).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionState::Completed | ExecutionState::Failed | ExecutionState::TimedOut | ExecutionState::Cancelled
        )
    }

    /// Whether the runtime may move an execution from `self` to `next`.
    pub fn can_become(self, next: ExecutionState) -> bool {
        use ExecutionState::*;
        match (self, next) {
            (Pending, Running | Cancelled | TimedOut | Failed) => true,
            (Running, Completed | Failed | TimedOut | Cancelled) => true,
            // Replaying the dead letter that failed it.
            (Failed, Running) => true,
            _ => false,
        }
    }
}

string_enum! {
    /// Where a task is in its life: `pending → running → completed | failed`,
    /// back to `pending` for a retry, `waiting` while it depends on something that
    /// is not time (a suspended orchestrator, a signal wait), `cancelled` with its
    /// execution.
    ///
    /// ```
    /// use courier_core::TaskState;
    /// assert!(TaskState::Running.can_become(TaskState::Pending)); // a retry
    /// assert!(!TaskState::Completed.can_become(TaskState::Pending));
    /// ```
    TaskState {
        /// Claimable once `scheduled_for` has passed.
        Pending => "pending",
        /// Leased to a worker until `lease_expires_at`.
        Running => "running",
        /// Not claimable: waiting for a child, a signal, or a wake-up.
        Waiting => "waiting",
        /// Finished with a result.
        Completed => "completed",
        /// Finished with an error, attempts used up or not retryable.
        Failed => "failed",
        /// Cancelled with its execution.
        Cancelled => "cancelled",
    }
}

impl TaskState {
    /// Whether the task is finished (a failed task can still be replayed from its dead letter).
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Completed | TaskState::Failed | TaskState::Cancelled)
    }

    /// Whether a task may move from `self` to `next`.
    pub fn can_become(self, next: TaskState) -> bool {
        use TaskState::*;
        match (self, next) {
            (Pending, Running | Completed | Cancelled | Waiting) => true,
            (Running, Completed | Failed | Pending | Waiting | Cancelled) => true,
            (Waiting, Pending | Completed | Cancelled) => true,
            // Replaying its dead letter.
            (Failed, Pending) => true,
            _ => false,
        }
    }
}

string_enum! {
    /// What a task is.
    TaskKind {
        /// A run of an orchestrator: deterministic code that starts children and waits for them.
        Orchestrator => "orchestrator",
        /// A call of an activity: ordinary code with side effects, retried by policy.
        Activity => "activity",
        /// A durable timer: claimable when it is due, completed by whoever claims it.
        Sleep => "sleep",
        /// A wait for a named signal; completed by the signal (or, with a timeout,
        /// failed with kind `timeout` by whoever claims it when the timeout is due).
        SignalWait => "signal_wait",
        /// A recorded orchestrator side effect (counter, state value, progress):
        /// created completed, never claimed; it holds the step so replay skips it.
        Effect => "effect",
    }
}

impl TaskKind {
    /// Kinds a worker completes itself without user code (timers).
    pub fn is_timer(self) -> bool {
        matches!(self, TaskKind::Sleep | TaskKind::SignalWait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for s in ExecutionState::ALL {
            assert_eq!(s.as_str().parse::<ExecutionState>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), *s);
        }
        for k in TaskKind::ALL {
            assert_eq!(k.as_str().parse::<TaskKind>().unwrap(), *k);
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{}\"", k.as_str()));
        }
        let e = "done".parse::<TaskState>().unwrap_err();
        assert!(e.to_string().contains("done"));
    }

    #[test]
    fn terminal_states_only_leave_through_replay() {
        for s in ExecutionState::ALL.iter().filter(|s| s.is_terminal()) {
            for n in ExecutionState::ALL {
                let allowed = *s == ExecutionState::Failed && *n == ExecutionState::Running;
                assert_eq!(s.can_become(*n), allowed, "{s} -> {n}");
            }
        }
        for s in TaskState::ALL.iter().filter(|s| s.is_terminal()) {
            for n in TaskState::ALL {
                let allowed = *s == TaskState::Failed && *n == TaskState::Pending;
                assert_eq!(s.can_become(*n), allowed, "{s} -> {n}");
            }
        }
    }
}
