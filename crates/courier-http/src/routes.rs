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
//! (`auth.rs`); the document gives exactly those operations the token security
//! and the 401 answer.

use std::any::type_name;

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, Responder, Route as ActixRoute, web};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::schema::Schema;

use crate::auth;

/// The prefix of the API that API tokens guard.
pub(crate) const API: &str = "/v1";

/// Whether `path` is under [`API`] (and so behind the token check).
pub(crate) fn is_api(path: &str) -> bool {
    path.strip_prefix(API).is_some_and(|rest| rest.starts_with('/'))
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
        for method in P::methods() {
            let actix = actix_method(&method);
            let handler = handler.clone();
            self.0.push(Route {
                path: P::path(),
                method,
                operation: operation.clone(),
                schemas: schemas.clone(),
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
    /// scope behind the token check.
    pub fn mount(self, cfg: &mut web::ServiceConfig) {
        // One resource per path, in the order first added; then paths with fewer
        // `{name}` segments first, so that `/notifications/stream` is not taken by
        // `/notifications/{id}` (actix answers 405 from the first resource whose
        // path matches, whatever its methods).
        let mut paths: Vec<(String, Vec<ActixRoute>)> = Vec::new();
        for route in self.0 {
            let mounted = (route.mount)();
            match paths.iter_mut().find(|(path, _)| *path == route.path) {
                Some((_, routes)) => routes.push(mounted),
                None => paths.push((route.path, vec![mounted])),
            }
        }
        paths.sort_by_key(|(path, _)| path.matches('{').count());
        // The last wrap runs first: the token is checked before the content type.
        let mut api = web::scope(API)
            .wrap(actix_web::middleware::from_fn(crate::json_only::json_only))
            .wrap(actix_web::middleware::from_fn(auth::require_token));
        for (path, routes) in paths {
            let (relative, in_api) = match path.strip_prefix(API) {
                Some(rest) if is_api(&path) => (rest.to_string(), true),
                _ => (path.clone(), false),
            };
            let resource = routes
                .into_iter()
                .fold(web::resource(relative), |resource, route| resource.route(route));
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
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a route's documentation belongs to another handler")]
    fn a_handler_cannot_be_added_with_another_handlers_documentation() {
        let _ = Routes::default().add(crate::executions::__path_create, crate::executions::list);
    }
}
