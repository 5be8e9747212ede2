// OP25B Observatory web page: progressive enhancement only. Every page is
// complete without this file; it adds sorting by column, filtering the ASN
// table as you type, and submitting the window selector on change.
(function () {
  'use strict';

  document.documentElement.classList.add('js');

  function each(list, fn) { Array.prototype.forEach.call(list, fn); }

  // The value a row sorts by: the cell's data-v, else its text.
  function sortValue(row, index, type) {
    var cell = row.cells[index];
    if (!cell) { return type === 'num' ? -Infinity : ''; }
    var v = cell.getAttribute('data-v');
    if (v === null) { v = cell.textContent.trim(); }
    if (type === 'num') {
      var n = parseFloat(v);
      return isNaN(n) ? -Infinity : n;
    }
    return v.toLowerCase();
  }

  // makeSortable turns the head of each column with a data-type into a
  // button. The first click sorts ascending, the next descending; the sort
  // is stable, so equal rows keep their order.
  function makeSortable(table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    var heads = table.tHead.rows[0].cells;
    each(heads, function (th, index) {
      var type = th.getAttribute('data-type');
      if (!type) { return; }
      var button = document.createElement('button');
      button.type = 'button';
      button.className = 'sort';
      while (th.firstChild) { button.appendChild(th.firstChild); }
      th.appendChild(button);
      button.addEventListener('click', function () {
        var dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
        each(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', dir);
        var sign = dir === 'ascending' ? 1 : -1;
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var keyed = rows.map(function (row, i) {
          return { row: row, key: sortValue(row, index, type), i: i };
        });
        keyed.sort(function (a, b) {
          if (a.key < b.key) { return -sign; }
          if (a.key > b.key) { return sign; }
          return a.i - b.i;
        });
        var frag = document.createDocumentFragment();
        keyed.forEach(function (k) { frag.appendChild(k.row); });
        body.appendChild(frag);
      });
    });
  }

  // setupFilter filters the ASN table by the text box and the class and
  // family selects without a round trip. A select whose filter the server
  // already applied (data-server) submits the form instead, since the rows
  // of the other classes are not on the page.
  function setupFilter() {
    var form = document.getElementById('asn-filters');
    var table = document.getElementById('asn-table');
    if (!form) { return; }
    var text = form.elements.namedItem('q');
    var cls = form.elements.namedItem('class');
    var fam = form.elements.namedItem('family');
    var count = document.getElementById('asn-count');
    var empty = document.getElementById('asn-empty');
    var rows = table ? Array.prototype.slice.call(table.tBodies[0].rows) : [];

    function apply() {
      var needle = text.value.trim().toLowerCase();
      var c = cls.getAttribute('data-server') ? '' : cls.value;
      var f = fam.getAttribute('data-server') ? '' : fam.value;
      var shown = 0;
      rows.forEach(function (row) {
        var ok = (!needle || (row.getAttribute('data-search') || '').indexOf(needle) >= 0) &&
          (!c || row.getAttribute('data-class') === c) &&
          (!f || row.getAttribute('data-family') === f);
        row.hidden = !ok;
        if (ok) { shown++; }
      });
      if (count && count.getAttribute('data-template')) {
        count.textContent = count.getAttribute('data-template')
          .replace('{shown}', String(shown)).replace('{total}', String(rows.length));
      }
      if (empty) { empty.hidden = shown > 0; }
      if (window.history && window.history.replaceState) {
        var url = new URL(window.location.href);
        setParam(url, 'q', needle ? text.value.trim() : '');
        if (!cls.getAttribute('data-server')) { setParam(url, 'class', cls.value); }
        if (!fam.getAttribute('data-server')) { setParam(url, 'family', fam.value); }
        window.history.replaceState(null, '', url.pathname + url.search + url.hash);
      }
    }

    text.addEventListener('input', apply);
    [cls, fam].forEach(function (select) {
      select.addEventListener('change', function () {
        if (select.getAttribute('data-server')) { form.submit(); } else { apply(); }
      });
    });
    apply();
  }

  function setParam(url, name, value) {
    if (value) { url.searchParams.set(name, value); } else { url.searchParams.delete(name); }
  }

  function setupAutosubmit() {
    each(document.querySelectorAll('select.autosubmit'), function (select) {
      select.addEventListener('change', function () { select.form.submit(); });
    });
  }

  function init() {
    each(document.querySelectorAll('table.sortable'), makeSortable);
    setupFilter();
    setupAutosubmit();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
}());
