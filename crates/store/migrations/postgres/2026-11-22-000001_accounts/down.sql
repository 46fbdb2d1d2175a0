DROP TABLE mail_messages;
DROP TABLE outbox;
DROP TABLE contacts;
DROP TABLE accounts;
