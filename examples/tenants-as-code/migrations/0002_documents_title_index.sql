-- A second release: documents are listed by title.
CREATE INDEX documents_title ON documents (title);
