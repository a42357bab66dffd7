"""moto's DynamoDB sorts the whole table at each query, comparing its typed values in Python: a test
whose table holds thousands of items (or 150,000) spends seconds of CPU per few queries. The same
answers, cheaper: `sort_by_plain_values(monkeypatch)` while the test runs (moto in this process)."""
from __future__ import annotations


def sort_by_plain_values(monkeypatch) -> None:
    """moto sorts the whole table at each query (then the index's matches) comparing its typed values
    in Python, a query over 150,000 items took seconds. The same order, by the plain values (each key
    attribute has one type); and a query does not sort the whole table first: it sorts its matches by
    their whole key (an order of its own, whatever the table's), so it reads the table's items as stored."""
    from moto.dynamodb.models.table import Table

    def plain(value):
        return None if value is None else value.cast_value

    def stored(self):
        return [item for items in self.items.values() for item in (items.values() if self.range_key_attr else [items])]

    def all_items(self):
        return sorted(stored(self), key=lambda x: (plain(x.hash_key), plain(x.range_key)) if x.range_key
                      else plain(x.hash_key))

    def query(self, *args, **kwargs):
        self.all_items = lambda: stored(self)       # (moto serves one DynamoDB request at a time: moto_patch)
        try:
            return original_query(self, *args, **kwargs)
        finally:
            del self.all_items
    original_query = Table.query

    def sorted_items(self, hash_key_attrs, range_key_attrs, items):
        attrs = self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs)
        items.sort(key=lambda x: tuple(plain(x.attrs[key]) for key in attrs))
        return items
    monkeypatch.setattr(Table, "all_items", all_items)
    monkeypatch.setattr(Table, "sorted_items", sorted_items)
    monkeypatch.setattr(Table, "query", query)
