DROP TABLE signing_keys;
DROP TABLE plan_codes;
DROP TABLE api_keys;
DROP TABLE clients;
DROP TABLE partners;
