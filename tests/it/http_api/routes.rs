//! The route endpoints over real HTTP: `GET`, `PUT` and `DELETE /api/routes/{output}`, and
//! `POST /api/routes`, which takes the output in its body and answers exactly as `PUT` does.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{send, write};
use crate::helpers::{TestApp, routing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_endpoint_reads_sets_and_removes_a_route() {
    let app = TestApp::spawn_admin().await;
    let (status, answer) = send(&app, Method::GET, "/api/routes/es9out%232", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["variable"], Value::Null);
    let (status, _) = send(&app, Method::GET, "/api/routes/nosuch", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, answer) =
        write(&app, Method::PUT, "/api/routes/ES9OUT%232", &json!({"variable": "doorway#1.gain"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#2", "doorway#1.gain"]));
    let (_, answer) = send(&app, Method::GET, "/api/routes/es9out%232", None, None).await;
    assert_eq!(
        answer,
        json!({"output": "es9out#2", "variable": "doorway#1.gain", "range": [0.0, 1.0], "safe": 0.0, "slew": 0.0})
    );

    let (status, answer) = write(&app, Method::DELETE, "/api/routes/es9out%232", &json!({})).await;
    assert_eq!((status, answer["reply"].as_str()), (StatusCode::OK, Some("removed route es9out#2")));
    assert_eq!(app.osc.recv().await, routing(&["remove", "es9out#2"]));
    assert_eq!(app.state().await["routes"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_routes_routes_with_a_slew_and_refuses_what_put_refuses() {
    let app = TestApp::spawn_admin().await;
    let body = json!({"output": "es9out#1", "variable": "doorway#1.threshold", "slew": 2});
    let (status, answer) = send(&app, Method::POST, "/api/routes", None, Some(&body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token: {answer}");
    assert_eq!(app.state().await["routes"], json!({}), "a refused token changes nothing");

    let (status, answer) = write(&app, Method::POST, "/api/routes", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"applied": true, "reply": "routed es9out#1 → doorway#1.threshold (slew 2 V/s)"}));
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#1", "doorway#1.threshold"]));
    let (_, route) = send(&app, Method::GET, "/api/routes/es9out%231", None, None).await;
    assert_eq!(
        route,
        json!({"output": "es9out#1", "variable": "doorway#1.threshold", "range": [0.0, 1.0], "safe": 0.0, "slew": 2.0})
    );
    assert_eq!(app.state().await["slew"], json!({"es9out#1": 2.0}));
    let (status, answer) = write(&app, Method::POST, "/api/routes", &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "the same route again changes nothing, as a PUT's would: {answer}");

    // Each refusal, by POST and by PUT alike; neither touches the route.
    let refusals = [
        (json!({"output": "es9out#1", "variable": "doorway#1.threshold", "slew": -1}), StatusCode::BAD_REQUEST),
        (json!({"output": "es9out#1", "variable": "doorway#1.threshold", "slew": 5000}), StatusCode::BAD_REQUEST),
        (json!({"output": "es9out#1", "variable": "nosuch#1.x", "slew": 1}), StatusCode::BAD_REQUEST),
        (json!({"output": "es9out#99", "variable": "doorway#1.gain"}), StatusCode::NOT_FOUND),
    ];
    for (body, want) in &refusals {
        let (status, answer) = write(&app, Method::POST, "/api/routes", body).await;
        assert_eq!(status, *want, "POST {body}: {answer}");
        let mut put = body.clone();
        let output = put.as_object_mut().and_then(|b| b.remove("output")).expect("an output");
        let path = format!("/api/routes/{}", output.as_str().expect("a name").replace('#', "%23"));
        let (put_status, put_answer) = write(&app, Method::PUT, &path, &put).await;
        assert_eq!(put_status, *want, "PUT {path} {put}: {put_answer}");
        assert_eq!(answer, put_answer, "the same answer for {body}");
    }
    let (_, answer) = write(&app, Method::POST, "/api/routes", &refusals[1].0).await;
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("slew rate")), "says why: {answer}");
    let (status, _) = write(&app, Method::POST, "/api/routes", &json!({"variable": "doorway#1.gain"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an output is needed");
    assert_eq!(send(&app, Method::GET, "/api/routes/es9out%231", None, None).await.1, route, "unchanged");
    assert!(app.osc.drain().await.is_empty(), "nothing refused reached the hardware");

    // PUT keeps working beside it.
    let (status, _) = write(&app, Method::PUT, "/api/routes/es9out%231", &json!({"variable": "doorway#1.gain"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, route) = send(&app, Method::GET, "/api/routes/es9out%231", None, None).await;
    assert_eq!((&route["variable"], &route["slew"]), (&json!("doorway#1.gain"), &json!(0.0)));
}
