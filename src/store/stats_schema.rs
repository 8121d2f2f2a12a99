//! Table definitions of the statistics tables (migration `2026-11-23-000002_stats`), kept
//! apart from `schema.rs` so the statistics surface can evolve on its own.

diesel::table! {
    stats_uploads (id) {
        id -> BigInt,
        account_id -> BigInt,
        account_name -> Text,
        uploaded_at -> BigInt,
        preset -> Text,
        content_type -> Text,
        record_count -> BigInt,
        new_count -> BigInt,
        replaced_count -> BigInt,
        cpts_ids -> Text,
        warnings -> Text,
    }
}

diesel::table! {
    stats_records (id) {
        id -> BigInt,
        upload_id -> BigInt,
        cpts_id -> Text,
        period_start -> Text,
        period_end -> Text,
        profession -> Text,
        version -> BigInt,
        superseded_by -> Nullable<BigInt>,
        requests_received -> Nullable<BigInt>,
        requests_handled -> Nullable<BigInt>,
        requests_from_regulation -> Nullable<BigInt>,
        consultations_done -> Nullable<BigInt>,
        redirected_emergency -> Nullable<BigInt>,
        redirected_other -> Nullable<BigInt>,
        no_shows -> Nullable<BigInt>,
        slots_offered -> Nullable<BigInt>,
        slots_used -> Nullable<BigInt>,
        participating_professionals -> Nullable<BigInt>,
        median_delay_hours -> Nullable<Double>,
    }
}

diesel::table! {
    stats_search_tally (cpts_key, department, day) {
        cpts_key -> Text,
        department -> Text,
        day -> Text,
        searches -> BigInt,
        no_result_base -> BigInt,
        no_result_final -> BigInt,
    }
}

diesel::joinable!(stats_records -> stats_uploads (upload_id));
diesel::allow_tables_to_appear_in_same_query!(stats_uploads, stats_records);
