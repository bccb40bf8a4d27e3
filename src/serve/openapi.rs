//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the request and response
//! types with schemars (JSON Schema 2020-12, as OpenAPI 3.1 uses).

use schemars::generate::SchemaSettings;
use serde_json::{Value as Json, json};

use super::api::{BatchRequest, BatchResponse, ErrorBody, ModelInfo, Prediction, Status};
use super::encounter::EncounterSchema;

fn error_responses(codes: &[(&str, &str)], error: &Json) -> serde_json::Map<String, Json> {
    codes
        .iter()
        .map(|(code, why)| {
            (
                (*code).to_owned(),
                json!({"description": why, "content": {"application/json": {"schema": error}}}),
            )
        })
        .collect()
}

fn ok(description: &str, schema: &Json) -> Json {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// Builds the document. `batch_limit` becomes the batch array's `maxItems`.
pub fn document(batch_limit: usize) -> Json {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "#/components/schemas".into())
        .into_generator();
    let sub = |s: schemars::Schema| s.to_value();
    let status = sub(generator.subschema_for::<Status>());
    let info = sub(generator.subschema_for::<ModelInfo>());
    let encounter = sub(generator.subschema_for::<EncounterSchema>());
    let prediction = sub(generator.subschema_for::<Prediction>());
    let batch = sub(generator.subschema_for::<BatchRequest>());
    let batch_out = sub(generator.subschema_for::<BatchResponse>());
    let error = sub(generator.subschema_for::<ErrorBody>());
    let mut schemas = generator.take_definitions(true);
    if let Some(items) = schemas
        .get_mut("BatchRequest")
        .and_then(|b| b.pointer_mut("/properties/encounters"))
        .and_then(Json::as_object_mut)
    {
        items.insert("minItems".into(), json!(1));
        items.insert("maxItems".into(), json!(batch_limit));
    }

    let timeout = [(
        "408",
        "The request did not complete within the server's timeout.",
    )];
    let with_timeout = |mut responses: serde_json::Map<String, Json>| {
        responses.extend(error_responses(&timeout, &error));
        Json::Object(responses)
    };
    let predict_errors = [
        ("400", "The body is not valid JSON."),
        ("413", "The body is larger than the server's limit."),
        ("415", "The Content-Type is not application/json."),
        (
            "422",
            "A field is missing or invalid; `fields` names each one.",
        ),
        ("500", "The model returned an invalid score."),
        ("503", "No model is ready yet."),
    ];
    let predict_params = json!([
        {"name": "explain", "in": "query", "required": false,
         "description": "Include the largest feature contributions.",
         "schema": {"type": "boolean", "default": false}},
        {"name": "top", "in": "query", "required": false,
         "description": "How many contributions to include with explain=true.",
         "schema": {"type": "integer", "minimum": 1, "maximum": super::api::MAX_TOP,
                    "default": super::api::DEFAULT_TOP}}
    ]);
    let predict_responses = |schema: &Json, what: &str| {
        let mut r = serde_json::Map::new();
        r.insert("200".into(), ok(what, schema));
        r.extend(error_responses(&predict_errors, &error));
        with_timeout(r)
    };
    let get_op = |id: &str, summary: &str, mut responses: serde_json::Map<String, Json>| {
        responses.extend(error_responses(&timeout, &error));
        json!({"get": {"operationId": id, "summary": summary, "responses": responses}})
    };
    let one = |code: &str, v: Json| {
        let mut m = serde_json::Map::new();
        m.insert(code.into(), v);
        m
    };
    let mut ready = one("200", ok("A verified, warmed model is serving.", &status));
    ready.insert(
        "503".into(),
        ok("Not ready: loading, warming or failed.", &status),
    );
    let mut model_info = one("200", ok("The served model.", &info));
    model_info.extend(error_responses(
        &[("503", "No model is ready yet.")],
        &error,
    ));

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "health-predict",
            "version": crate::VERSION,
            "description": "Hospital readmission risk for one diabetic encounter or a batch."
        },
        "paths": {
            "/health": get_op("health", "Liveness: the process serves.",
                one("200", ok("Alive.", &status))),
            "/ready": get_op("ready", "Readiness: 200 only when the model is loaded, verified and warmed.", ready),
            "/model-info": get_op("modelInfo", "The served model's identity, metrics and threshold.", model_info),
            "/predict": {"post": {
                "operationId": "predict",
                "summary": "Predict readmission for one encounter.",
                "parameters": predict_params,
                "requestBody": {"required": true, "content": {"application/json": {"schema": encounter}}},
                "responses": predict_responses(&prediction, "The prediction."),
            }},
            "/predict/batch": {"post": {
                "operationId": "predictBatch",
                "summary": "Predict readmission for several encounters.",
                "parameters": predict_params,
                "requestBody": {"required": true, "content": {"application/json": {"schema": batch}}},
                "responses": predict_responses(&batch_out, "Predictions in request order."),
            }},
            "/openapi.json": get_op("openapi", "This document.",
                one("200", ok("The OpenAPI document.", &json!({"type": "object"})))),
            "/metrics": get_op("metrics", "Prometheus metrics (text exposition format 0.0.4).",
                one("200", json!({"description": "Metrics.",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}))),
        },
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_references_resolve_and_limit_is_set() {
        let doc = document(250);
        let text = doc.to_string();
        for name in [
            "Encounter",
            "Prediction",
            "BatchRequest",
            "ErrorBody",
            "ModelInfo",
            "FieldError",
        ] {
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{name} missing from {text}"
            );
        }
        for cap in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = cap.split('"').next().unwrap();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling {name}"
            );
        }
        assert_eq!(
            doc["components"]["schemas"]["BatchRequest"]["properties"]["encounters"]["maxItems"],
            250
        );
        assert!(
            doc["paths"]["/predict"]["post"]["responses"]
                .get("422")
                .is_some()
        );
    }
}
