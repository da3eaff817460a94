-- The dataset browser at 100,000 items and more.
--
-- Keyset paging (cursor) in the default order, filename then id, by code point: one
-- index range from the cursor, never a sort of the whole dataset. hidden and type are
-- included so the page's count(*) under the default filter (visible files) can be an
-- index-only scan too.
CREATE INDEX items_dataset_filename_c ON items (dataset_id, filename COLLATE "C", id COLLATE "C")
    INCLUDE (hidden, type);

-- Directory listings count visible items per directory range; the same key as
-- items_dataset_dir (which it replaces, serving its dir filters and globs) plus the
-- columns of the default filter, so a listing never reads the table's rows.
CREATE INDEX items_dataset_dir_visible ON items (dataset_id, dir COLLATE "C")
    INCLUDE (hidden, type);
DROP INDEX items_dataset_dir;
