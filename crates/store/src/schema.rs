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

diesel::joinable!(contacts -> accounts (account_id));
diesel::allow_tables_to_appear_in_same_query!(accounts, contacts, outbox, mail_messages);
