import Steps from "../steps";

export default function About() {
  return (
    <main>
      <h1 id="pagina">Sobre</h1>
      <Steps page="about" />
    </main>
  );
}
