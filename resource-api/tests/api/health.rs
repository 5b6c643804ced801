use reqwest::StatusCode;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn healthz_returns_200() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn readyz_returns_200_with_database_and_static_keys() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn readyz_returns_503_when_database_is_closed() {
    let app = spawn_app().await;
    app.db.clone().close().await.unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn unknown_path_returns_404_problem() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .client
        .put(app.url("/api/v2/notes"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}
