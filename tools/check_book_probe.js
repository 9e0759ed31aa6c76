// The probe tools/check_book_browser.py adds to each page: after the page loaded, it waits for MathJax and the
// images, then writes what it found into a hidden <pre>, which Chromium's --dump-dom returns. The placeholders
// __ID__, __FALLBACK__, __SHRINK_NATURAL__ and __SHRINK_RATIO__ are filled in by make_probe_copy.
(function () {
  var done = false;
  function inSkipped(node) {
    for (var n = node.parentNode; n && n.nodeType === 1; n = n.parentNode) {
      var t = n.tagName.toLowerCase();
      if (t === 'script' || t === 'style' || t === 'pre' || t === 'code' || t === 'textarea' ||
          t === 'mjx-container' || t === 'noscript' || t === 'template') return true;
      if (n.classList && n.classList.contains('highlight')) return true;   // code and text outputs
    }
    return false;
  }
  // A display equation is clipped when its typeset box or any glyph sticks out of the visible part of its
  // container, the text column or the window, or when the container scrolls sideways.
  function clipped(e) {
    var c = e.tagName.toLowerCase() === 'mjx-container' ? e : e.querySelector('mjx-container');
    var math = c && c.querySelector('mjx-math');
    if (!math) return false;
    var box = c.getBoundingClientRect();
    var left = box.left + c.clientLeft, right = left + (c.clientWidth || box.width);
    var outer = [e.getBoundingClientRect(), (e.closest('article, main, [role="main"]') || document.body)
      .getBoundingClientRect()];
    outer.forEach(function (o) { left = Math.max(left, o.left); right = Math.min(right, o.right); });
    right = Math.min(right, document.documentElement.clientWidth);
    if (c.scrollWidth > c.clientWidth + 2 && getComputedStyle(c).overflowX !== 'visible') return true;
    var parts = [math].concat(Array.prototype.slice.call(math.querySelectorAll('mjx-c')));
    return parts.some(function (p) {
      var b = p.getBoundingClientRect();
      return b.width > 0 && (b.right > right + 1 || b.left < left - 1);
    });
  }
  function collect() {
    var r = {};
    r.images = Array.prototype.map.call(document.images, function (i) {
      return {src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0};
    });
    r.mathElements = document.querySelectorAll('.math').length;
    r.mjx = document.querySelectorAll('mjx-container').length;
    r.untypeset = Array.prototype.filter.call(document.querySelectorAll('.math'), function (e) {
      return !e.querySelector('mjx-container') && !e.closest('mjx-container');
    }).map(function (e) { return e.textContent.trim().slice(0, 80); });
    r.mathErrors = Array.prototype.map.call(document.querySelectorAll('mjx-merror, [data-mjx-error]'),
      function (e) { return (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120); });
    var raw = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, null);
    var rawPattern = /\\\(|\\\[|\$\$|\$[^$\n]*\\[a-zA-Z]+[^$\n]*\$/;
    for (var n = walker.nextNode(); n; n = walker.nextNode()) {
      if (rawPattern.test(n.nodeValue) && !inSkipped(n)) raw.push(n.nodeValue.trim().slice(0, 80));
    }
    r.rawMath = raw;
    var views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
    r.widgetViews = views.length;
    r.widgetsMissing = Array.prototype.filter.call(views, function (s) {
      return !s.parentElement.querySelector('.jupyter-widgets');
    }).length;
    r.widgetErrors = (document.body.innerText.match(/Error displaying widget[^\n]*/g) || []).slice(0, 5);
    r.fontErrors = [];
    if (document.fonts) document.fonts.forEach(function (f) {
      if (f.status === 'error') r.fontErrors.push(f.family);
    });
    // Font Awesome's script replaces each <i class="fa-..."> by an <svg>; an <i> left without one is a missing icon.
    r.faPlaceholders = Array.prototype.filter.call(document.querySelectorAll(
      'i.fa, i.fas, i.far, i.fab, i.fa-solid, i.fa-regular, i.fa-brands'), function (e) {
      return !e.querySelector('svg');
    }).length;
    r.mathjaxLoaded = !!(window.MathJax && window.MathJax.startup);
    r.wideMath = Array.prototype.filter.call(document.querySelectorAll('div.math, mjx-container[display="true"]'),
      function (e) { return (e.tagName.toLowerCase() === 'div' || !e.closest('div.math')) && clipped(e); })
      .map(function (e) { return e.textContent.replace(/\s+/g, ' ').trim().slice(0, 60); });
    function meantWidth(i) {   // a width attribute in pixels says how wide a HiDPI image is meant to be shown
      var w = (i.getAttribute('width') || '').trim();
      return /^\d+(\.\d+)?(px)?$/.test(w) ? parseFloat(w) : i.naturalWidth;
    }
    r.smallImages = Array.prototype.filter.call(document.images, function (i) {
      var shown = i.getBoundingClientRect().width, meant = meantWidth(i);
      return meant > __SHRINK_NATURAL__ && shown > 0 && shown < __SHRINK_RATIO__ * meant;
    }).map(function (i) {
      return {src: i.getAttribute('src'), natural: meantWidth(i), shown: Math.round(i.getBoundingClientRect().width)};
    });
    var text = document.body.innerText, found = [];
    var words = /\b(TODO|FIXME|XXX|TBD)\b|lorem ipsum|placeholder/gi, m;
    while ((m = words.exec(text)) !== null && found.length < 5) {
      var w = m[0];
      if (/^(todo|fixme|xxx|tbd)$/i.test(w) && w !== w.toUpperCase()) continue;   // "todo" in prose is a word
      found.push(text.slice(Math.max(0, m.index - 30), m.index + w.length + 30).replace(/\s+/g, ' ').trim());
    }
    r.placeholders = found;
    return r;
  }
  function pending(r) {   // things that may still be happening asynchronously
    return r.untypeset.length || r.widgetsMissing || r.faPlaceholders ||
      r.images.some(function (i) { return !i.ok; });
  }
  function write(r) {
    if (done) return; done = true;
    var pre = document.createElement('pre');
    pre.id = '__ID__'; pre.style.display = 'none'; pre.textContent = JSON.stringify(r);
    document.body.appendChild(pre);
  }
  function attempt(n) {   // re-check a few times before reporting, so slow scripts are not reported as failures
    if (done) return;
    var r = collect();
    if (pending(r) && n < 10) setTimeout(function () { attempt(n + 1); }, 300);
    else write(r);
  }
  function waitImages() {
    var pending = Array.prototype.filter.call(document.images, function (i) {
      if (i.loading === 'lazy') i.loading = 'eager';
      return !i.complete;
    });
    return Promise.all(pending.map(function (i) {
      return new Promise(function (ok) { i.addEventListener('load', ok); i.addEventListener('error', ok); });
    }));
  }
  window.addEventListener('load', function () {
    var waits = [waitImages()];
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) waits.push(MathJax.startup.promise);
    if (document.fonts && document.fonts.ready) waits.push(document.fonts.ready);
    var go = function () { setTimeout(function () { attempt(0); }, 500); };
    Promise.all(waits).then(go, go);
  });
  setTimeout(function () { write(collect()); }, __FALLBACK__);
})();
