"""A loaded corpus seen by source ("page"): its rows grouped per file, page BM25, centroids.

Queries are answered with pages: a user wants the file, with its best chunk
shown, and the evidence for a file is spread over its chunks. So beside the
chunk scores, ranking uses page-level signals (see search.py): the best
chunk's score per mode, BM25 over the whole page, the cosine to the page's
mean vector, and the cosine to its first chunk (a documentation page opens
with what it is about). Everything here is computed once per load, from the
arrays, in time linear in the rows.
"""
import numpy as np

from .accel import K1, B


class Pages:
    def __init__(self, loaded):
        n = len(loaded)
        src = loaded.source_of
        live = np.ones(n, dtype=bool) if loaded.alive is None else loaded.alive
        self.perm = np.argsort(src, kind="stable")           # rows grouped by source, docid order
        # usually the rows already are (a file's chunks get consecutive docids): no copies then
        self.in_order = bool(n < 2 or (np.diff(self.perm) > 0).all())
        grouped = src[self.perm]
        self.starts = (np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if n
                       else np.zeros(0, dtype=np.int64))
        self.source = grouped[self.starts]                   # source code of each page
        counts = np.diff(np.r_[self.starts, n])
        self.page_of_row = np.empty(n, dtype=np.int64)
        self.page_of_row[self.perm] = np.repeat(np.arange(len(self.starts)), counts)
        self.alive = self.reduce(np.maximum, live) if n else np.zeros(0, dtype=bool)
        self.length = self.reduce(np.add, np.where(live, loaded.doclen, 0.0)) if n else np.zeros(0)
        self.live = int(self.alive.sum())
        self.mean_length = float(self.length[self.alive].mean()) if self.live else 1.0
        if self.mean_length <= 0:
            self.mean_length = 1.0
        # centroids: the mean of a page's live chunk vectors, normalised
        sums = np.zeros((len(self.starts), loaded.dim), dtype=np.float32)
        if n:       # a sparse (page x row) sum: ten times faster than np.add.reduceat on rows
            from scipy.sparse import csr_matrix
            member = csr_matrix((live.astype(np.float32), (self.page_of_row, np.arange(n))),
                                shape=(len(self.starts), n))
            sums = np.asarray(member @ loaded.vectors, dtype=np.float32)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        self.vectors = np.where(norms > 0, sums / np.where(norms > 0, norms, 1), 0).astype(np.float32)
        # the first live row of each page (docids follow the document's order)
        self.lead = np.full(len(self.starts), -1, dtype=np.int64)
        order = self.perm[live[self.perm]]
        if len(order):
            pages = self.page_of_row[order]
            first = np.r_[True, pages[1:] != pages[:-1]]
            self.lead[pages[first]] = order[first]

    def __len__(self):
        return len(self.starts)

    def reduce(self, ufunc, row_values):
        """``ufunc`` (np.maximum, np.add) of ``row_values`` over each page's rows."""
        values = np.asarray(row_values)
        return ufunc.reduceat(values if self.in_order else values[self.perm], self.starts)

    def best(self, row_scores, mask=None):
        """Each page's best row score among the rows ``mask`` allows (-inf where none)."""
        s = row_scores if mask is None else np.where(mask, row_scores, -np.inf)
        return self.reduce(np.maximum, s.astype(np.float64))

    def allowed(self, mask):
        return self.alive if mask is None else self.alive & self.reduce(np.maximum, mask)

    def bm25(self, postings):
        """Okapi BM25 of each page as one document (its live chunks' words together);
        ``postings`` is search.query_postings's (rows, term frequencies) per query term."""
        out = np.zeros(len(self), dtype=np.float64)
        for rows, tf in postings:
            ptf = np.bincount(self.page_of_row[rows], weights=tf, minlength=len(self))
            hit = np.flatnonzero(ptf)
            idf = np.log(1.0 + self.live / len(hit))
            f = ptf[hit]
            out[hit] += f * (K1 + 1) / (f + K1 * ((1 - B) + B * self.length[hit] / self.mean_length)) * idf
        return out

    def rows(self, page):
        end = self.starts[page + 1] if page + 1 < len(self.starts) else len(self.perm)
        return self.perm[self.starts[page]:end]


def pages_of(loaded) -> Pages:
    """The page view of ``loaded``, built on first use and kept with it."""
    view = getattr(loaded, "_pages", None)
    if view is None:
        view = loaded._pages = Pages(loaded)
    return view
