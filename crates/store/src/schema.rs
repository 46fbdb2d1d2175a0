// The one schema of both backends (the migrations under migrations/postgres and
// migrations/sqlite create the same tables with each dialect's types).

diesel::table! {
    accounts (id) {
        id -> Text,
        username -> Nullable<Text>,
        username_normalized -> Nullable<Text>,
        full_name -> Nullable<Text>,
        locale -> Nullable<Text>,
        password_hash -> Nullable<Text>,
        account_type -> Text,
        status -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    contacts (id) {
        id -> Text,
        account_id -> Text,
        kind -> Text,
        value -> Text,
        value_normalized -> Text,
        is_primary -> Bool,
        verified_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    outbox (seq) {
        seq -> BigInt,
        message_id -> Text,
        topic -> Text,
        payload -> Text,
        created_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
        deliveries -> Integer,
        published_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    mail_messages (id) {
        id -> Text,
        kind -> Text,
        recipient -> Text,
        status -> Text,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        next_attempt_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    partners (id) {
        id -> Text,
        name -> Text,
        landing_url -> Nullable<Text>,
        created_at -> Timestamp,
        brand_color -> Nullable<Text>,
    }
}

diesel::table! {
    clients (id) {
        id -> Text,
        partner_id -> Text,
        name -> Text,
        secret_hash -> Nullable<Text>,
        is_public -> Bool,
        redirect_uris -> Text,
        grants -> Text,
        scopes -> Text,
        access_ttl_secs -> Integer,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        partner_id -> Text,
        key_hash -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    plan_codes (partner_id, code) {
        partner_id -> Text,
        code -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        private_der -> Text,
        public_jwk -> Text,
        created_at -> Timestamp,
        publish_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    sessions (id_digest) {
        id_digest -> Text,
        account_id -> Text,
        auth_time -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    grants (id) {
        id -> Text,
        client_id -> Text,
        account_id -> Text,
        scope -> Text,
        nonce -> Nullable<Text>,
        auth_time -> Timestamp,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    auth_codes (code_digest) {
        code_digest -> Text,
        grant_id -> Text,
        redirect_uri -> Text,
        code_challenge -> Nullable<Text>,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    refresh_tokens (token_digest) {
        token_digest -> Text,
        grant_id -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    consents (account_id, client_id) {
        account_id -> Text,
        client_id -> Text,
        scope -> Text,
        granted_at -> Timestamp,
    }
}

diesel::table! {
    password_tokens (token_digest) {
        token_digest -> Text,
        account_id -> Text,
        partner_id -> Nullable<Text>,
        grant_id -> Nullable<Text>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        sent_to -> Nullable<Text>,
        purpose -> Text,
    }
}

diesel::table! {
    memberships (partner_id, account_id) {
        partner_id -> Text,
        account_id -> Text,
        employee_id -> Nullable<Text>,
        email_normalized -> Nullable<Text>,
        outcome -> Text,
        attributes -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    registration_failures (partner_id, row_digest) {
        partner_id -> Text,
        row_digest -> Text,
        reasons -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    idempotency_keys (partner_id, idem_key) {
        partner_id -> Text,
        idem_key -> Text,
        request_digest -> Text,
        status -> Integer,
        response -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    identities (id) {
        id -> Text,
        account_id -> Text,
        provider -> Text,
        subject -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    confirmations (id) {
        id -> Text,
        account_id -> Text,
        kind -> Text,
        contact -> Text,
        digest -> Text,
        attempts -> Integer,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    dead_letters (id) {
        id -> Text,
        topic -> Text,
        message_id -> Text,
        payload -> Text,
        reason -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    mail_resends (recipient) {
        recipient -> Text,
        resent_at -> Timestamp,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        at -> Timestamp,
        actor_kind -> Text,
        actor_id -> Text,
        action -> Text,
        target_kind -> Text,
        target_id -> Text,
        outcome -> Text,
        request_id -> Text,
        source -> Text,
        detail -> Text,
    }
}

diesel::joinable!(contacts -> accounts (account_id));
diesel::joinable!(identities -> accounts (account_id));
diesel::joinable!(clients -> partners (partner_id));
diesel::joinable!(api_keys -> partners (partner_id));
diesel::table! {
    revocation_log (seq) {
        seq -> BigInt,
        kind -> Text,
        key -> Text,
        expires_at -> Timestamp,
        logged_at -> Timestamp,
    }
}

diesel::joinable!(auth_codes -> grants (grant_id));
diesel::joinable!(refresh_tokens -> grants (grant_id));
diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    contacts,
    outbox,
    mail_messages,
    partners,
    clients,
    api_keys,
    plan_codes,
    signing_keys,
    revoked_tokens,
    sessions,
    grants,
    auth_codes,
    refresh_tokens,
    consents,
    password_tokens,
    memberships,
    registration_failures,
    idempotency_keys,
    identities,
    confirmations,
    dead_letters,
    mail_resends,
    audit_events
);
