//! 405 Method Not Allowed, with `Allow`, for a method a described path does not have.
//!
//! actix-web routes each `cfg.route(path, web::post()…)` as a resource guarded by its
//! method, so a request with another method falls through to the server's JSON 404;
//! RFC 9110 (and the OpenAPI description's clients) expect 405 naming the methods the
//! resource has. [`mount`] adds, after a service's routes, one last resource per path
//! of its OpenAPI description that answers every other method so. The methods come
//! from the description itself ([`described`]), so the two cannot drift apart.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// Each path of `doc` with the methods it describes (upper case, in RFC order).
pub fn described(doc: &utoipa::openapi::OpenApi) -> Vec<(String, Vec<&'static str>)> {
    doc.paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods = [
                ("GET", item.get.is_some()),
                ("HEAD", item.head.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
                ("OPTIONS", item.options.is_some()),
                ("PATCH", item.patch.is_some()),
            ]
            .into_iter()
            .filter_map(|(m, on)| on.then_some(m))
            .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// Mounts the 405 resources of `paths` (see [`described`]); call after the routes.
pub fn mount(cfg: &mut web::ServiceConfig, paths: &[(String, Vec<&'static str>)]) {
    for (path, methods) in paths {
        let allow = methods.join(", ");
        cfg.service(web::resource(path.as_str()).to(move || {
            let allow = allow.clone();
            async move { not_allowed(&allow) }
        }));
    }
}

fn not_allowed(allow: &str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "error": "MethodNotAllowedException",
            "message": format!("this resource answers {allow} only"),
        }))
}
