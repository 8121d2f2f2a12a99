//! Foundation: health, geography reads, accounts, and the authorisation matrix.

mod common;

use common::spawn_app;
use sasnp::domain::Role;
use serde_json::json;

#[tokio::test]
async fn health_and_ready() {
    let app = spawn_app().await;
    let (s, body) = app.get_json("/health", None).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("ok")));
    let (s, body) = app.get_json("/ready", None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["communes"], 1228);
}

#[tokio::test]
async fn nantes_point_is_in_nantes_and_its_territory() {
    let app = spawn_app().await;
    let (s, body) = app
        .get_json("/v1/territories/at?lat=47.2184&lon=-1.5536", None)
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["commune"]["insee"], "44109");
    assert_eq!(body["commune"]["name"], "Nantes");
    assert_eq!(body["department"], "44");
    assert!(
        body["commune"]["postcodes"]
            .as_array()
            .unwrap()
            .contains(&json!("44000"))
    );
    let cpts = body["cpts"]["id"]
        .as_str()
        .expect("Nantes has a CPTS territory");
    // The territory named there is one GET /v1/territories lists.
    let res = app.get("/v1/territories", None).await;
    assert_eq!(res.headers()["content-type"], "application/geo+json");
    let fc: serde_json::Value = res.json().await.unwrap();
    assert_eq!(fc["type"], "FeatureCollection");
    let ids: Vec<&str> = fc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&cpts));
    assert!(
        fc["features"][0]["geometry"]["type"]
            .as_str()
            .unwrap()
            .ends_with("Polygon")
    );
}

#[tokio::test]
async fn points_outside_the_region_or_malformed_are_refused_with_problems() {
    let app = spawn_app().await;
    // Paris
    let res = app
        .get("/v1/territories/at?lat=48.8566&lon=2.3522", None)
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("outside Pays de la Loire")
    );
    for q in ["lat=abc&lon=1", "lat=47", "lat=95&lon=0", "lat=47&lon=NaN"] {
        let (s, body) = app.get_json(&format!("/v1/territories/at?{q}"), None).await;
        assert_eq!(s, 400, "{q}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("lat")
                || body["detail"].as_str().unwrap().contains("lon"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn commune_search_by_postcode_and_name() {
    let app = spawn_app().await;
    let (s, body) = app.get_json("/v1/communes?q=44000", None).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = body["communes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Nantes"]);
    // A postal code shared by several communes returns all of them (checked against the geography).
    let shared = app
        .state
        .geo
        .communes()
        .iter()
        .flat_map(|c| c.postcodes.iter())
        .find(|pc| app.state.geo.communes_by_postcode(pc).len() >= 3)
        .expect("some postal code covers several communes")
        .clone();
    let expected = app.state.geo.communes_by_postcode(&shared).len();
    let (_, body) = app
        .get_json(&format!("/v1/communes?q={shared}&limit=100"), None)
        .await;
    assert_eq!(body["communes"].as_array().unwrap().len(), expected);
    for c in body["communes"].as_array().unwrap() {
        assert!(
            c["postcodes"]
                .as_array()
                .unwrap()
                .contains(&json!(shared.as_str()))
        );
    }
    let (_, body) = app.get_json("/v1/communes?q=saint%20nazaire", None).await;
    assert_eq!(body["communes"][0]["insee"], "44184");
    let (s, _) = app.get_json("/v1/communes", None).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn admin_manages_accounts_and_revocation_takes_effect() {
    let app = spawn_app().await;
    let admin = app.admin_token.clone();
    let res = app
        .client
        .post(app.url("/v1/accounts"))
        .bearer_auth(&admin)
        .json(&json!({"name": "osnp-1", "role": "operator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: serde_json::Value = res.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_i64().unwrap();
    let (s, _) = app.get_json("/v1/accounts", Some(&token)).await;
    assert_eq!(s, 403, "an operator cannot list accounts");
    let (s, list) = app.get_json("/v1/accounts", Some(&admin)).await;
    assert_eq!(s, 200);
    let listed = list.as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|a| a["name"] == "osnp-1" && a["role"] == "operator")
    );
    assert!(
        !list.to_string().contains(&token),
        "tokens are never listed"
    );
    // a cpts account needs a known CPTS
    let res = app
        .client
        .post(app.url("/v1/accounts"))
        .bearer_auth(&admin)
        .json(&json!({"name": "x", "role": "cpts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let res = app
        .client
        .post(app.url("/v1/accounts"))
        .bearer_auth(&admin)
        .json(&json!({"name": "x", "role": "cpts", "cpts": "no-such-cpts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let res = app
        .client
        .post(app.url("/v1/accounts"))
        .bearer_auth(&admin)
        .json(&json!({"name": "x", "role": "wizard"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // revoke → the token stops working at once
    let res = app
        .client
        .delete(app.url(&format!("/v1/accounts/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (s, body) = app.get_json("/v1/accounts", Some(&token)).await;
    assert_eq!(s, 401, "{body}");
    let res = app
        .client
        .delete(app.url("/v1/accounts/999999"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

/// Every role against every protected endpoint: the expected status, no more, no less.
#[tokio::test]
async fn authorisation_matrix() {
    let app = spawn_app().await;
    let cpts_id = app.state.geo.territories()[0].id.clone();
    let tokens = [
        ("admin", Some(app.admin_token.clone())),
        (
            "operator",
            Some(app.token("op", Role::Operator, None).await),
        ),
        ("analyst", Some(app.token("an", Role::Analyst, None).await)),
        (
            "cpts",
            Some(app.token("cp", Role::Cpts, Some(&cpts_id)).await),
        ),
        ("none", None),
        ("bogus", Some("sasnp_0000".to_string())),
    ];
    // (method, path, body, expected status per role in the order above)
    let cases: Vec<(&str, &str, Option<serde_json::Value>, [u16; 6])> = vec![
        ("GET", "/v1/accounts", None, [200, 403, 403, 403, 401, 401]),
        (
            "POST",
            "/v1/accounts",
            Some(json!({"name": "m", "role": "analyst"})),
            [201, 403, 403, 403, 401, 401],
        ),
        (
            "DELETE",
            "/v1/accounts/999999",
            None,
            [404, 403, 403, 403, 401, 401],
        ),
        (
            "GET",
            "/v1/territories",
            None,
            [200, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/communes?q=49000",
            None,
            [200, 200, 200, 200, 200, 200],
        ),
    ];
    for (method, path, body, expected) in cases {
        for ((role, token), want) in tokens.iter().zip(expected) {
            let mut req = app.client.request(method.parse().unwrap(), app.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            if status >= 400 {
                assert_eq!(
                    res.headers()["content-type"],
                    "application/problem+json",
                    "{method} {path} as {role}"
                );
            }
            assert_eq!(status, want, "{method} {path} as {role}");
        }
    }
}
