DROP TABLE mail_resends;
DROP TABLE dead_letters;
