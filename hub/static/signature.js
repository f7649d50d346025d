// Maillon — a signature drawn in person (consent and contract pages). No dependency, no
// tracking: the drawing becomes a PNG data URL in a hidden field when the form is sent.
// Without script, or without a pointer, the paper form is scanned instead.
const pads = document.querySelectorAll("[data-signature-pad]");

for (const pad of pads) {
  const canvas = pad.querySelector("canvas");
  const field = pad.querySelector("[data-signature-value]");
  const clear = pad.querySelector("[data-signature-clear]");
  const context = canvas.getContext("2d");
  let drawing = false;
  let drawn = false;
  pad.hidden = false;
  context.lineWidth = 2.5;
  context.lineCap = "round";
  context.strokeStyle = "#1b1b1f";

  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [
      ((event.clientX - box.left) * canvas.width) / box.width,
      ((event.clientY - box.top) * canvas.height) / box.height,
    ];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    context.beginPath();
    context.moveTo(...point(event));
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    context.lineTo(...point(event));
    context.stroke();
    drawn = true;
  });
  const stop = () => {
    drawing = false;
    field.value = drawn ? canvas.toDataURL("image/png") : "";
  };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  clear.addEventListener("click", () => {
    context.clearRect(0, 0, canvas.width, canvas.height);
    drawn = false;
    field.value = "";
  });
}
