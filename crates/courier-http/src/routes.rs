//! The route table: every endpoint once.
//!
//! A handler says its method and path only in its `#[utoipa::path(...)]`. Its
//! resource adds it here with `Routes::add(__path_handler, handler)`, which reads
//! them back from utoipa's `Path` trait both to mount the actix route and to
//! record the operation for `/openapi.json`. [`configure`](crate::configure)
//! mounts the table and [`openapi`](crate::openapi) documents the same table, so
//! the routing and the document cannot drift apart.
//!
//! Everything under [`API`] is mounted in one scope behind the API token check
//! (`auth.rs`). Every operation under it also requires a [`Scope`], decided here
//! for all of them at once ([`required_scope`]) so that no route can be added
//! without one; each resource checks it (403 without). The document gives
//! exactly the scoped operations the token security (naming the scope), the 401
//! and the 403 answers.

use std::any::type_name;

use actix_web::body::BoxBody;
use actix_web::dev::ServiceRequest;
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{FromRequest, Handler, Responder, Route as ActixRoute, web};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::schema::Schema;

use crate::auth::{self, Scope};

/// The prefix of the API that API tokens guard.
pub(crate) const API: &str = "/v1";

/// Whether `path` is under [`API`] (and so behind the token check).
pub(crate) fn is_api(path: &str) -> bool {
    path.strip_prefix(API).is_some_and(|rest| rest.starts_with('/'))
}

/// The one route outside [`API`] with a scope (asked for only when
/// `metrics.require_token` is set).
pub(crate) const METRICS: &str = "/metrics";

/// The external workers' operations (`workers.rs`): the `worker` scope.
const WORKER_OPERATIONS: &[&str] = &[
    "claimTasks",
    "heartbeatTask",
    "checkpointTask",
    "reportProgress",
    "completeTask",
    "failTask",
];

/// Operations that start or steer work: the `dispatch` scope. Minting connection
/// tokens and managing source subscriptions are not among them: either lets the
/// caller read any user's notifications, which is more than sending them.
const DISPATCH_OPERATIONS: &[&str] = &[
    "createExecution",
    "cancelExecution",
    "sendSignal",
    "sendNotification",
    "notify",
];

/// The scope an operation requires: the worker's and the dispatching operations
/// by name, any other `GET` under [`API`] `read` (reads change nothing), and
/// everything else `admin`, so a new operation nobody thought about is closed
/// rather than open. `None`: no token is ever asked for.
fn required_scope(path: &str, method: &HttpMethod, operation_id: &str) -> Option<Scope> {
    if path == METRICS {
        return Some(Scope::Read);
    }
    if !is_api(path) {
        return None;
    }
    Some(if WORKER_OPERATIONS.contains(&operation_id) {
        Scope::Worker
    } else if DISPATCH_OPERATIONS.contains(&operation_id) {
        Scope::Dispatch
    } else if *method == HttpMethod::Get {
        Scope::Read
    } else {
        Scope::Admin
    })
}

/// One operation: where it is served, what the document says of it, and how to
/// mount it.
pub(crate) struct Route {
    /// The full path, with `{name}` segments (actix's and OpenAPI's spelling).
    pub path: String,
    /// Its method.
    pub method: HttpMethod,
    /// The operation as its `#[utoipa::path]` describes it, tags included.
    pub operation: Operation,
    /// The schemas its bodies name, with the schemas they name in turn.
    pub schemas: Vec<(String, RefOr<Schema>)>,
    /// The scope a token needs for it; `None` outside [`API`] (but `/metrics`).
    pub scope: Option<Scope>,
    mount: Box<dyn Fn() -> ActixRoute>,
}

/// The route table (see the module doc).
#[derive(Default)]
pub(crate) struct Routes(Vec<Route>);

impl Routes {
    /// Every route of the API (each resource adds its own).
    pub fn all() -> Routes {
        crate::routes(Routes::default())
    }

    /// Adds `handler` where its `#[utoipa::path]` (`doc`, the `__path_handler`
    /// struct the attribute generates) says it is served.
    ///
    /// Caveat: the tags and the schemas an operation names are read through
    /// utoipa's `__dev` traits (`Tags`, `SchemaReferences`), which its own
    /// `OpenApi` derive uses for the same purpose but which are not a stable API;
    /// a utoipa upgrade may need this function adjusted (the tests will say so).
    pub fn add<P, H, Args>(mut self, doc: P, handler: H) -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
        H: Handler<Args> + Clone + 'static,
        Args: FromRequest + 'static,
        H::Output: Responder + 'static,
    {
        // `__path_x` must describe `x`: the same module, the same name.
        debug_assert_eq!(
            type_name::<P>().replacen("__path_", "", 1),
            type_name::<H>(),
            "a route's documentation belongs to another handler"
        );
        let _ = doc;
        let mut operation = P::operation();
        let tags = <P as utoipa::__dev::Tags<'static>>::tags();
        if !tags.is_empty() {
            operation.tags = Some(tags.into_iter().map(String::from).collect());
        }
        let mut schemas = Vec::new();
        <P as utoipa::__dev::SchemaReferences>::schemas(&mut schemas);
        let operation_id = operation.operation_id.clone().unwrap_or_default();
        for method in P::methods() {
            let actix = actix_method(&method);
            let handler = handler.clone();
            let scope = required_scope(&P::path(), &method, &operation_id);
            self.0.push(Route {
                path: P::path(),
                method,
                operation: operation.clone(),
                schemas: schemas.clone(),
                scope,
                mount: Box::new(move || web::route().method(actix.clone()).to(handler.clone())),
            });
        }
        self
    }

    /// The routes, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.0.iter()
    }

    /// Mounts every route: one actix resource per path, those under [`API`] in one
    /// scope behind the token check, each resource checking its methods' scopes.
    pub fn mount(self, cfg: &mut web::ServiceConfig) {
        // One resource per path, in the order first added; then paths with fewer
        // `{name}` segments first, so that `/notifications/stream` is not taken by
        // `/notifications/{id}` (actix answers 405 from the first resource whose
        // path matches, whatever its methods).
        struct Resource {
            path: String,
            routes: Vec<ActixRoute>,
            scopes: Vec<(Method, Scope)>,
        }
        let mut paths: Vec<Resource> = Vec::new();
        for route in self.0 {
            let mounted = (route.mount)();
            let scoped = route.scope.map(|scope| (actix_method(&route.method), scope));
            match paths.iter_mut().find(|r| r.path == route.path) {
                Some(resource) => {
                    resource.routes.push(mounted);
                    resource.scopes.extend(scoped);
                }
                None => paths.push(Resource {
                    path: route.path,
                    routes: vec![mounted],
                    scopes: scoped.into_iter().collect(),
                }),
            }
        }
        paths.sort_by_key(|r| r.path.matches('{').count());
        // The last wrap runs first: the token is checked before the content type.
        let mut api = web::scope(API)
            .wrap(actix_web::middleware::from_fn(crate::json_only::json_only))
            .wrap(actix_web::middleware::from_fn(auth::require_token));
        for Resource { path, routes, scopes } in paths {
            let (relative, in_api) = match path.strip_prefix(API) {
                Some(rest) if is_api(&path) => (rest.to_string(), true),
                _ => (path.clone(), false),
            };
            let scopes: std::rc::Rc<[(Method, Scope)]> = scopes.into();
            let resource = routes
                .into_iter()
                .fold(web::resource(relative), |resource, route| resource.route(route))
                .wrap(actix_web::middleware::from_fn(
                    move |req: ServiceRequest, next: Next<BoxBody>| auth::require_scope(scopes.clone(), req, next),
                ));
            if in_api {
                api = api.service(resource);
            } else {
                cfg.service(resource);
            }
        }
        cfg.service(api);
    }
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_the_api_prefix_are_the_api() {
        assert!(is_api("/v1/executions"));
        assert!(!is_api("/v1"));
        assert!(!is_api("/v10/x"));
        assert!(!is_api("/notifications/stream"));
    }

    #[test]
    fn every_api_operation_has_the_scope_its_kind_of_work_needs() {
        use Scope::*;
        let expected: &[(&str, Scope)] = &[
            ("cleanup", Admin),
            ("listDeadLetters", Read),
            ("discardDeadLetter", Admin),
            ("getDeadLetter", Read),
            ("replayDeadLetter", Admin),
            ("pollEvents", Read),
            ("listFunctions", Read),
            ("getStats", Read),
            ("listNodes", Read),
            ("createSchedule", Admin),
            ("listSchedules", Read),
            ("getSchedule", Read),
            ("patchSchedule", Admin),
            ("deleteSchedule", Admin),
            ("pauseSchedule", Admin),
            ("resumeSchedule", Admin),
            ("triggerSchedule", Admin),
            ("backfillSchedule", Admin),
            ("listScheduleRuns", Read),
            ("getFunction", Read),
            ("putFunction", Admin),
            ("deleteFunction", Admin),
            ("streamEvents", Read),
            ("createExecution", Dispatch),
            ("listExecutions", Read),
            ("getExecution", Read),
            ("cancelExecution", Dispatch),
            ("pauseExecution", Admin),
            ("resumeExecution", Admin),
            ("pauseQueue", Admin),
            ("resumeQueue", Admin),
            ("getExecutionResult", Read),
            ("sendSignal", Dispatch),
            ("listNotifications", Read),
            ("sendNotification", Dispatch),
            ("listSourceSubscriptions", Read),
            ("subscribeSource", Admin),
            ("unsubscribeSource", Admin),
            ("createConnectionToken", Admin),
            ("notify", Dispatch),
            ("listQueues", Read),
            ("getTask", Read),
            ("checkpointTask", Worker),
            ("completeTask", Worker),
            ("failTask", Worker),
            ("heartbeatTask", Worker),
            ("reportProgress", Worker),
            ("createWebhook", Admin),
            ("listWebhooks", Read),
            ("deleteWebhook", Admin),
            ("getWebhook", Read),
            ("listDeliveries", Read),
            ("disableWebhook", Admin),
            ("enableWebhook", Admin),
            ("replaySkippedDeliveries", Admin),
            ("recoverFailedDeliveries", Admin),
            ("rotateWebhookSecret", Admin),
            ("claimTasks", Worker),
            ("eventsWebSocket", Read),
            ("metrics", Read),
        ];
        let routes = Routes::all();
        let mut scoped = Vec::new();
        for route in routes.iter() {
            let id = route.operation.operation_id.clone().unwrap_or_default();
            if is_api(&route.path) {
                assert!(route.scope.is_some(), "{id} under /v1 has no scope");
            }
            if let Some(scope) = route.scope {
                scoped.push((id, scope));
            }
        }
        scoped.sort();
        let mut expected: Vec<(String, Scope)> = expected.iter().map(|(id, s)| (id.to_string(), *s)).collect();
        expected.sort();
        assert_eq!(
            scoped, expected,
            "an operation's scope changed or a new one needs deciding"
        );
        // The named lists name real operations.
        for id in WORKER_OPERATIONS.iter().chain(DISPATCH_OPERATIONS) {
            assert!(scoped.iter().any(|(known, _)| known == id), "no operation {id}");
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a route's documentation belongs to another handler")]
    fn a_handler_cannot_be_added_with_another_handlers_documentation() {
        let _ = Routes::default().add(crate::executions::__path_create, crate::executions::list);
    }
}
