//! Table definitions shared by both backends (kept in step with `migrations/*`).

diesel::table! {
    accounts (id) {
        id -> BigInt,
        name -> Text,
        role -> Text,
        cpts_id -> Nullable<Text>,
        created_at -> BigInt,
        disabled_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        account_id -> BigInt,
        token_hash -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    sources (id) {
        id -> BigInt,
        cpts_id -> Text,
        name -> Text,
        format -> Text,
        url -> Nullable<Text>,
        poll_interval_s -> Nullable<BigInt>,
        created_by -> Nullable<BigInt>,
        created_at -> BigInt,
        last_attempt_at -> Nullable<BigInt>,
        last_success_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        last_report -> Nullable<Text>,
        etag -> Nullable<Text>,
        last_modified -> Nullable<Text>,
        snapshot_seq -> BigInt,
    }
}

diesel::table! {
    places (id) {
        id -> BigInt,
        source_id -> BigInt,
        place_key -> Text,
        name -> Nullable<Text>,
        address -> Nullable<Text>,
        postcode -> Nullable<Text>,
        city -> Nullable<Text>,
        insee -> Nullable<Text>,
        lat -> Double,
        lon -> Double,
        precision -> Text,
        snapshot_seq -> BigInt,
    }
}

diesel::table! {
    slots (id) {
        id -> BigInt,
        source_id -> BigInt,
        external_id -> Text,
        place_id -> BigInt,
        cpts_id -> Text,
        start_at -> BigInt,
        end_at -> BigInt,
        feed_status -> Text,
        practitioner_id -> Nullable<Text>,
        practitioner_name -> Nullable<Text>,
        profession -> Nullable<Text>,
        specialty -> Nullable<Text>,
        structure_kind -> Nullable<Text>,
        structure_id -> Nullable<Text>,
        structure_name -> Nullable<Text>,
        modality -> Text,
        appointment_type -> Nullable<Text>,
        audience -> Integer,
        surnumeraire -> Bool,
        booking_url -> Nullable<Text>,
        booking_phone -> Nullable<Text>,
        capacity -> Integer,
        snapshot_seq -> BigInt,
        hold_id -> Nullable<Text>,
        held_until -> Nullable<BigInt>,
        appointment_id -> Nullable<BigInt>,
        removed_from_feed_at -> Nullable<BigInt>,
        feed_hash -> Nullable<BigInt>,
    }
}

diesel::table! {
    holds (id) {
        id -> Text,
        slot_id -> BigInt,
        account_id -> BigInt,
        created_at -> BigInt,
        expires_at -> BigInt,
        status -> Text,
        ended_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    appointments (id) {
        id -> BigInt,
        slot_id -> Nullable<BigInt>,
        hold_id -> Text,
        account_id -> BigInt,
        cpts_id -> Text,
        orientation_category -> Text,
        patient_ref -> Nullable<Text>,
        status -> Text,
        start_at -> BigInt,
        end_at -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        at -> BigInt,
        account_id -> Nullable<BigInt>,
        action -> Text,
        slot_id -> Nullable<BigInt>,
        hold_id -> Nullable<Text>,
        appointment_id -> Nullable<BigInt>,
        detail -> Nullable<Text>,
    }
}

diesel::joinable!(api_tokens -> accounts (account_id));
diesel::joinable!(places -> sources (source_id));
diesel::joinable!(slots -> places (place_id));
diesel::joinable!(slots -> sources (source_id));
diesel::joinable!(holds -> slots (slot_id));
diesel::joinable!(appointments -> slots (slot_id));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    api_tokens,
    sources,
    places,
    slots,
    holds,
    appointments,
    audit_events,
);
