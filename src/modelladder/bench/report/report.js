window.addEventListener('load', function () {
  var drawn = 0;
  document.querySelectorAll('svg[data-plot]').forEach(function (svg) {
    var box = svg.getBoundingClientRect();
    var marks = Array.prototype.filter.call(svg.querySelectorAll('[data-mark]'), function (m) {
      var b = m.getBBox(); return b.width > 0 || b.height > 0;
    });
    var n = (box.width > 0 && box.height > 0) ? marks.length : 0;
    svg.setAttribute('data-drawn', String(n));
    if (n > 0) drawn += 1;
  });
  document.body.setAttribute('data-plots-drawn', String(drawn));
});
